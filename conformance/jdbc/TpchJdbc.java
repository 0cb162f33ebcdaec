import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.Statement;
import java.util.Properties;

/**
 * Drives sluice with PgJDBC the way DBeaver and Tableau do: a Statement per TPC-H query
 * and a PreparedStatement with a bound parameter. Each result is written as a TSV file
 * (one row per line, \N for NULL) for the Python side to compare with the reference.
 *
 * Usage: TpchJdbc <jdbc-url> <user> <password> <queries-dir> <out-dir>
 */
public class TpchJdbc {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        Path queries = Path.of(args[3]);
        Path out = Path.of(args[4]);
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            for (int n = 1; n <= 22; n++) {
                String sql = Files.readString(queries.resolve("q" + n + ".sql"));
                try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
                    Files.writeString(out.resolve("q" + n + ".tsv"), dump(rs));
                } catch (Exception e) {
                    Files.writeString(out.resolve("q" + n + ".error"), String.valueOf(e));
                }
            }
            try (PreparedStatement ps = conn.prepareStatement(
                    "select n_name, n_regionkey from tpch.nation where n_nationkey = ? and n_name like ?")) {
                ps.setInt(1, 7);
                ps.setString(2, "G%");
                try (ResultSet rs = ps.executeQuery()) {
                    Files.writeString(out.resolve("prepared.tsv"), dump(rs));
                }
            }
        }
    }

    static String dump(ResultSet rs) throws Exception {
        ResultSetMetaData md = rs.getMetaData();
        StringBuilder sb = new StringBuilder();
        while (rs.next()) {
            for (int i = 1; i <= md.getColumnCount(); i++) {
                if (i > 1) sb.append('\t');
                String v = rs.getString(i);
                sb.append(v == null ? "\\N" : v);
            }
            sb.append('\n');
        }
        return sb.toString();
    }
}
