"""The table catalog: where tables live, their schemas, and how Delta is written and read."""
