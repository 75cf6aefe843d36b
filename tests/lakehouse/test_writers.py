import pytest

from lakehouse.errors import RecoError
from lakehouse.writers import DELTA_RS, SPARK_DELTA, choose_writer, delta_on_classpath


@pytest.mark.parametrize(
    ("setting", "jars", "chosen"),
    [
        ("auto", True, SPARK_DELTA),
        ("auto", False, DELTA_RS),
        ("delta-rs", True, DELTA_RS),
        ("delta-rs", False, DELTA_RS),
        ("spark-delta", True, SPARK_DELTA),
    ],
)
def test_choose_writer(setting, jars, chosen):
    assert choose_writer(setting, jars) == chosen


def test_spark_delta_without_jars_is_refused_not_silently_replaced():
    with pytest.raises(RecoError, match="needs Delta's jars"):
        choose_writer("spark-delta", False)


def test_this_machine_has_no_delta_jars(spark):
    # No Maven here: the embedded default must detect the absence (and so choose delta-rs).
    assert delta_on_classpath(spark) is False
    assert choose_writer("auto", delta_on_classpath(spark)) == DELTA_RS
