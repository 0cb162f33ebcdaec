\set key random(0, 24)
SELECT n_name, n_regionkey FROM tpch.nation WHERE n_nationkey = :key;
