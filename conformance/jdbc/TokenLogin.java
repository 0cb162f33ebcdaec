import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

/**
 * PgJDBC logs in with an OIDC access token as the password over verified TLS, reads the
 * table it has a grant on, and is refused (SQLSTATE 42501) on one it has not.
 *
 * Usage: TokenLogin URL TOKEN ALLOWED_SQL DENIED_SQL
 * Prints "rows=N" for the allowed query and "denied=SQLSTATE" for the other.
 */
public class TokenLogin {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", "jdbc-user");
        props.setProperty("password", args[1]);
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(args[2])) {
                int rows = 0;
                while (rs.next()) {
                    rows++;
                }
                System.out.println("rows=" + rows);
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(args[3])) {
                System.out.println("denied=none");
            } catch (SQLException e) {
                System.out.println("denied=" + e.getSQLState());
            }
            // The connection is still usable after the refusal.
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                rs.next();
                System.out.println("after=" + rs.getInt(1));
            }
        }
    }
}
