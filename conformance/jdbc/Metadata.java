import java.sql.*;
import java.util.*;

/**
 * DatabaseMetaData and ResultSetMetaData as DBeaver and Tableau call them. Prints each
 * result set as "## name", a "cols" line (label:java.sql.Types code) and its rows, so the
 * test can compare sluice with PostgreSQL. Usage: Metadata URL USER PASSWORD
 */
public class Metadata {
    static void dump(String name, ResultSet rs, int maxRows) throws SQLException {
        System.out.println("## " + name);
        ResultSetMetaData md = rs.getMetaData();
        StringBuilder cols = new StringBuilder("cols");
        for (int i = 1; i <= md.getColumnCount(); i++) {
            cols.append('\t').append(md.getColumnLabel(i).toLowerCase()).append(':').append(md.getColumnType(i));
        }
        System.out.println(cols);
        int n = 0;
        while (rs.next()) {
            if (n++ >= maxRows) continue;
            StringBuilder row = new StringBuilder("row");
            for (int i = 1; i <= md.getColumnCount(); i++) {
                row.append('\t').append(rs.getString(i));
            }
            System.out.println(row);
        }
        System.out.println("count\t" + n);
        rs.close();
    }

    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("## product\nrow\t" + md.getDatabaseProductName() + "\t" + md.getDatabaseMajorVersion());
            dump("catalogs", md.getCatalogs(), 10);
            dump("schemas", md.getSchemas(), 10);
            dump("tables", md.getTables(null, "tpch", "%", new String[] {"TABLE"}), 20);
            dump("columns", md.getColumns(null, "tpch", "nation", "%"), 20);
            dump("primary_keys", md.getPrimaryKeys(null, "tpch", "nation"), 20);
            dump("imported_keys", md.getImportedKeys(null, "tpch", "nation"), 20);
            dump("index_info", md.getIndexInfo(null, "tpch", "nation", false, true), 20);
            // Two-column keys, and the keys other tables hold on a table.
            dump("primary_keys_lineitem", md.getPrimaryKeys(null, "tpch", "lineitem"), 20);
            dump("imported_keys_lineitem", md.getImportedKeys(null, "tpch", "lineitem"), 20);
            dump("exported_keys_orders", md.getExportedKeys(null, "tpch", "orders"), 20);
            dump("cross_reference", md.getCrossReference(null, "tpch", "partsupp", null, "tpch", "lineitem"), 20);
            dump("type_info", md.getTypeInfo(), 0);
            dump("table_types", md.getTableTypes(), 20);
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT n_nationkey, n_name, n_regionkey + 1 AS next FROM tpch.nation ORDER BY 1 LIMIT 2")) {
                ResultSetMetaData r = rs.getMetaData();
                System.out.println("## result_metadata");
                for (int i = 1; i <= r.getColumnCount(); i++) {
                    System.out.println("row\t" + r.getColumnName(i) + "\t" + r.getColumnTypeName(i) + "\t" + r.isNullable(i)
                        + "\t" + r.getTableName(i) + "\t" + r.getSchemaName(i) + "\t" + r.isAutoIncrement(i));
                }
            }
        }
    }
}
