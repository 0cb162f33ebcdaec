{{ config(materialized='view') }}
select n_nationkey, n_name from {{ source('tpch', 'nation') }}
