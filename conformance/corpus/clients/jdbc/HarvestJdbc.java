import java.sql.*;

/**
 * Calls the DatabaseMetaData and ResultSetMetaData methods SQL IDEs and BI tools call
 * (DBeaver, DataGrip, Tableau, Excel through JDBC bridges), so that the statements PgJDBC
 * sends for them can be harvested from the server's statement log (harvest_log.py).
 * Usage: HarvestJdbc URL USER PASSWORD
 */
public class HarvestJdbc {
    static Connection conn;

    /** A marker in the server's statement log: the statements after it come from `what`. */
    static void mark(String what) throws SQLException {
        try (Statement s = conn.createStatement()) {
            s.execute("SELECT 'harvest: " + what + "'");
        }
    }

    static void drain(String what, ResultSet rs) throws SQLException {
        int n = 0;
        while (rs.next()) n++;
        rs.close();
        System.out.println(what + "\t" + n);
    }

    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            conn = c;
            DatabaseMetaData md = c.getMetaData();
            mark("PgDatabaseMetaData.getDatabaseProductVersion");
            md.getDatabaseProductVersion();
            mark("PgDatabaseMetaData.getSQLKeywords");
            md.getSQLKeywords();
            mark("PgDatabaseMetaData.getNumericFunctions");
            md.getNumericFunctions();
            mark("PgDatabaseMetaData.getStringFunctions");
            md.getStringFunctions();
            mark("PgDatabaseMetaData.getSystemFunctions");
            md.getSystemFunctions();
            mark("PgDatabaseMetaData.getTimeDateFunctions");
            md.getTimeDateFunctions();
            mark("PgDatabaseMetaData.getCatalogs");
            drain("getCatalogs", md.getCatalogs());
            mark("PgDatabaseMetaData.getSchemas");
            drain("getSchemas", md.getSchemas());
            mark("PgDatabaseMetaData.getSchemas(tp%)");
            drain("getSchemas(tp%)", md.getSchemas(null, "tp%"));
            mark("PgDatabaseMetaData.getTableTypes");
            drain("getTableTypes", md.getTableTypes());
            mark("PgDatabaseMetaData.getTables(all)");
            drain("getTables(all)", md.getTables(null, null, "%", null));
            mark("PgDatabaseMetaData.getTables(tpch, TABLE VIEW)");
            drain("getTables(tpch, TABLE VIEW)", md.getTables(null, "tpch", "%", new String[] {"TABLE", "VIEW"}));
            mark("PgDatabaseMetaData.getTables(nation)");
            drain("getTables(nation)", md.getTables(null, "tpch", "nation", new String[] {"TABLE"}));
            mark("PgDatabaseMetaData.getTables(system tables)");
            drain("getTables(system tables)", md.getTables(null, "pg_catalog", "pg_%", new String[] {"SYSTEM TABLE"}));
            mark("PgDatabaseMetaData.getColumns(nation)");
            drain("getColumns(nation)", md.getColumns(null, "tpch", "nation", "%"));
            mark("PgDatabaseMetaData.getColumns(tpch all)");
            drain("getColumns(tpch all)", md.getColumns(null, "tpch", "%", "%"));
            mark("PgDatabaseMetaData.getColumns(one)");
            drain("getColumns(one)", md.getColumns(null, "tpch", "lineitem", "l_shipdate"));
            mark("PgDatabaseMetaData.getPrimaryKeys");
            drain("getPrimaryKeys", md.getPrimaryKeys(null, "tpch", "nation"));
            mark("PgDatabaseMetaData.getImportedKeys");
            drain("getImportedKeys", md.getImportedKeys(null, "tpch", "lineitem"));
            mark("PgDatabaseMetaData.getExportedKeys");
            drain("getExportedKeys", md.getExportedKeys(null, "tpch", "orders"));
            mark("PgDatabaseMetaData.getCrossReference");
            drain("getCrossReference", md.getCrossReference(null, "tpch", "orders", null, "tpch", "lineitem"));
            mark("PgDatabaseMetaData.getIndexInfo");
            drain("getIndexInfo", md.getIndexInfo(null, "tpch", "nation", false, true));
            mark("PgDatabaseMetaData.getIndexInfo(unique)");
            drain("getIndexInfo(unique)", md.getIndexInfo(null, "tpch", "lineitem", true, false));
            mark("PgDatabaseMetaData.getBestRowIdentifier");
            drain("getBestRowIdentifier", md.getBestRowIdentifier(null, "tpch", "nation", DatabaseMetaData.bestRowSession, true));
            mark("PgDatabaseMetaData.getVersionColumns");
            drain("getVersionColumns", md.getVersionColumns(null, "tpch", "nation"));
            mark("PgDatabaseMetaData.getTablePrivileges");
            drain("getTablePrivileges", md.getTablePrivileges(null, "tpch", "nation"));
            mark("PgDatabaseMetaData.getColumnPrivileges");
            drain("getColumnPrivileges", md.getColumnPrivileges(null, "tpch", "nation", "%"));
            mark("PgDatabaseMetaData.getTypeInfo");
            drain("getTypeInfo", md.getTypeInfo());
            mark("PgDatabaseMetaData.getUDTs");
            drain("getUDTs", md.getUDTs(null, null, "%", null));
            mark("PgDatabaseMetaData.getProcedures");
            drain("getProcedures", md.getProcedures(null, "pg_catalog", "lower"));
            mark("PgDatabaseMetaData.getProcedureColumns");
            drain("getProcedureColumns", md.getProcedureColumns(null, "pg_catalog", "lower", "%"));
            mark("PgDatabaseMetaData.getFunctions");
            drain("getFunctions", md.getFunctions(null, "pg_catalog", "upper"));
            mark("PgDatabaseMetaData.getFunctionColumns");
            drain("getFunctionColumns", md.getFunctionColumns(null, "pg_catalog", "upper", "%"));
            mark("PgDatabaseMetaData.getClientInfoProperties");
            drain("getClientInfoProperties", md.getClientInfoProperties());
            mark("PgResultSetMetaData (isNullable, isAutoIncrement, getTableName, …)");
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT n_nationkey, n_name, n_regionkey + 1 AS next FROM tpch.nation ORDER BY 1 LIMIT 2")) {
                ResultSetMetaData r = rs.getMetaData();
                for (int i = 1; i <= r.getColumnCount(); i++) {
                    r.isNullable(i);
                    r.isAutoIncrement(i);
                    r.getColumnTypeName(i);
                    r.getTableName(i);
                    r.getSchemaName(i);
                    r.getColumnDisplaySize(i);
                }
            }
            mark("PgPreparedStatement.getParameterMetaData");
            try (PreparedStatement p = c.prepareStatement("SELECT r_name FROM tpch.region WHERE r_regionkey = ?")) {
                p.getParameterMetaData().getParameterType(1);
                p.setLong(1, 2);
                mark("PgDatabaseMetaData.prepared");
                drain("prepared", p.executeQuery());
            }
        }
    }
}
