-- A view: the nations with the name of their region.
select n.n_nationkey as nation_key, n.n_name as nation, r.r_name as region
from {{ source('tpch', 'nation') }} n
join {{ source('tpch', 'region') }} r on n.n_regionkey = r.r_regionkey
