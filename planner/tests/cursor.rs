//! Cursor commands (`planner::cursor`): FETCH, MOVE and CLOSE as PostgreSQL reads them.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use planner::cursor::*;
use planner::error::ErrorKind;

fn fetch(sql: &str) -> Direction {
    match command(sql).unwrap().unwrap() {
        CursorCommand::Fetch { name, direction } => {
            assert_eq!(name, "c", "{sql}");
            direction
        }
        other => panic!("{sql}: {other:?}"),
    }
}

#[test]
fn fetch_forms_as_postgresql_reads_them() {
    use Direction::*;
    assert_eq!(fetch("FETCH c"), Forward(1));
    assert_eq!(fetch("fetch next from c;"), Forward(1));
    assert_eq!(fetch("FETCH FORWARD 2000 FROM \"c\""), Forward(2000));
    assert_eq!(fetch("FETCH FORWARD FROM c"), Forward(1));
    assert_eq!(fetch("FETCH 5 IN c"), Forward(5));
    assert_eq!(fetch("FETCH +5 c"), Forward(5));
    assert_eq!(fetch("FETCH ALL FROM c"), All);
    assert_eq!(fetch("FETCH FORWARD ALL c"), All);
    assert_eq!(fetch("FETCH FIRST c"), Absolute(1));
    assert_eq!(fetch("FETCH ABSOLUTE -2 c"), Absolute(-2));
    assert_eq!(fetch("FETCH RELATIVE 3 FROM c"), Relative(3));
    for back in [
        "FETCH PRIOR c",
        "FETCH LAST c",
        "FETCH BACKWARD c",
        "FETCH BACKWARD 3 c",
        "FETCH BACKWARD ALL c",
        "FETCH -1 c",
    ] {
        assert_eq!(fetch(back), Backward, "{back}");
    }
    assert_eq!(fetch("FETCH FORWARD 0 c"), Relative(0));
    assert_eq!(fetch("FETCH 0 FROM c"), Relative(0));
    // A cursor named like a keyword, and quoted names keep their case.
    assert_eq!(
        command("FETCH 2 FROM next").unwrap(),
        Some(CursorCommand::Fetch {
            name: "next".into(),
            direction: Forward(2)
        })
    );
    assert_eq!(
        command("MOVE ALL IN \"My Cursor\"").unwrap(),
        Some(CursorCommand::Move {
            name: "My Cursor".into(),
            direction: All
        })
    );
}

#[test]
fn close_and_other_texts() {
    assert_eq!(
        command("CLOSE ALL").unwrap(),
        Some(CursorCommand::Close(None))
    );
    assert_eq!(
        command("close C;").unwrap(),
        Some(CursorCommand::Close(Some("c".into())))
    );
    // CLOSE among other statements is the SQL parser's.
    assert_eq!(command("CLOSE c; SELECT 1").unwrap(), None);
    assert_eq!(command("SELECT 1").unwrap(), None);
    assert_eq!(command("fetched").unwrap(), None);
    assert_eq!(
        command("-- next page\n/* of rows */ FETCH 10 c").unwrap(),
        Some(CursorCommand::Fetch {
            name: "c".into(),
            direction: Direction::Forward(10)
        })
    );
    assert_eq!(command("\"fetch\" 1").unwrap(), None);
    assert_eq!(
        command("FETCH 1 FROM c; SELECT 1").unwrap_err().kind,
        ErrorKind::NotSupported
    );
    for bad in [
        "FETCH",
        "FETCH 1 2 c",
        "FETCH ABSOLUTE c",
        "MOVE 1.5 c",
        "CLOSE a b",
    ] {
        assert_eq!(command(bad).unwrap_err().kind, ErrorKind::Syntax, "{bad}");
    }
}

#[test]
fn declarations() {
    let parse = |sql: &str| {
        let statement =
            datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .unwrap()
                .pop()
                .unwrap();
        declaration(&statement)
    };
    let d = parse("DECLARE \"C1\" BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT 1")
        .unwrap()
        .unwrap();
    assert_eq!((d.name.as_str(), d.hold, d.binary), ("C1", true, true));
    assert_eq!(d.query.to_string(), "SELECT 1");
    let d = parse("declare c cursor for select 2").unwrap().unwrap();
    assert_eq!((d.name.as_str(), d.hold, d.binary), ("c", false, false));
    assert_eq!(
        parse("DECLARE c SCROLL CURSOR FOR SELECT 1")
            .unwrap_err()
            .kind,
        ErrorKind::NotSupported
    );
    assert_eq!(parse("SELECT 1").unwrap(), None);
}
