import numpy as np
import pyarrow as pa
from pyspark.sql import functions as F

from recspark.arrow import list_array, list_values, record_batches


def test_record_batches_hold_every_row_per_partition_in_bounded_batches(spark):
    frame = spark.range(0, 25_003, numPartitions=3).select(
        F.col("id").cast("int").alias("i"),
        (F.col("id") * 0.5).alias("x"),
        F.when(F.col("id") % 7 == 0, None).otherwise(F.col("id")).alias("maybe"),
    )
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "4000")
    try:
        per_partition = record_batches(frame).glom().collect()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")

    assert len(per_partition) == 3
    batches = [b for part in per_partition for b in part]
    assert all(isinstance(b, pa.RecordBatch) and b.num_rows <= 4000 for b in batches)
    table = pa.Table.from_batches(batches)
    assert [(f.name, f.type) for f in table.schema] == [
        ("i", pa.int32()), ("x", pa.float64()), ("maybe", pa.int64())
    ]
    ids = np.arange(25_003)
    np.testing.assert_array_equal(table.column("i").to_numpy(), ids)  # partitions in order
    np.testing.assert_array_equal(table.column("x").to_numpy(), ids * 0.5)
    assert table.column("maybe").null_count == len(range(0, 25_003, 7))


def test_record_batches_of_an_empty_frame_are_empty(spark):
    frame = spark.range(0).select(F.col("id").alias("i"))
    assert record_batches(frame).flatMap(lambda b: [b.num_rows]).sum() == 0


def test_list_values_and_list_array_round_trip():
    matrix = np.arange(12, dtype=np.float64).reshape(4, 3)
    offsets, flat = list_values(list_array(matrix).slice(1, 2))
    np.testing.assert_array_equal(offsets, [0, 3, 6])
    np.testing.assert_array_equal(flat, matrix[1:3].ravel())
