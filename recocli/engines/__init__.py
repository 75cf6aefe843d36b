"""Engines that run product code elsewhere (Spark); the product itself never imports them."""
