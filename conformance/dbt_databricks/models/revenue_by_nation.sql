-- A view over a view and sources, with the Spark functions dbt projects use.
select
  nations.nation,
  nations.region,
  date_format(o.o_orderdate, 'yyyy') as order_year,
  count(*) as orders,
  cast(sum(o.o_totalprice) as decimal(18, 2)) as revenue,
  {{ dbt.current_timestamp() }} as built_at
from {{ source('tpch', 'orders') }} o
join {{ source('tpch', 'customer') }} c on o.o_custkey = c.c_custkey
join {{ ref('nations') }} nations on c.c_nationkey = nations.nation_key
group by 1, 2, 3
