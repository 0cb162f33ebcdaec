#!/usr/bin/perl
# DBD::Pg (Perl DBI, Debian libdbd-pg-perl): connect, DBI's catalog calls (table_info,
# column_info, primary_key_info, foreign_key_info — each DBD::Pg's own catalog SQL), a
# preview, a query with placeholders, an error and the session after it. Prints JSON so
# the test can compare sluice's answers with PostgreSQL's.
use strict;
use warnings;
use DBI;
use JSON::PP;

my ($dsn, $user, $password) = @ARGV;
my $dbh = DBI->connect($dsn, $user, $password, { RaiseError => 1, PrintError => 0, AutoCommit => 1 })
    or die $DBI::errstr;
my %out;
sub rows {
    my ($sth, @cols) = @_;
    my @rows;
    while (my $r = $sth->fetchrow_hashref) {
        push @rows, [map { $r->{$_} } @cols];
    }
    return \@rows;
}
$out{tables} = rows($dbh->table_info(undef, 'tpch', '%', 'TABLE'), qw(TABLE_SCHEM TABLE_NAME TABLE_TYPE));
$out{columns} = rows($dbh->column_info(undef, 'tpch', 'nation', '%'),
                     qw(COLUMN_NAME TYPE_NAME DATA_TYPE NULLABLE ORDINAL_POSITION));
$out{primary_key} = [$dbh->primary_key(undef, 'tpch', 'lineitem')];
$out{foreign_keys} = rows($dbh->foreign_key_info(undef, 'tpch', 'orders', undef, 'tpch', 'lineitem'),
                          qw(UK_TABLE_NAME UK_COLUMN_NAME FK_TABLE_NAME FK_COLUMN_NAME ORDINAL_POSITION FK_NAME));
$out{preview} = $dbh->selectall_arrayref('SELECT * FROM tpch.nation ORDER BY n_nationkey LIMIT 3');
$out{param} = $dbh->selectall_arrayref(
    'SELECT n_name, n_regionkey FROM tpch.nation WHERE n_regionkey = ? AND n_name > ? ORDER BY n_name',
    undef, 1, 'B');
my $sth = $dbh->prepare('SELECT count(*) FROM tpch.orders WHERE o_orderdate < ?');
$sth->execute('1993-01-01');
$out{prepared} = $sth->fetchall_arrayref;
eval { $dbh->do('SELECT * FROM tpch.no_such_table'); };
$out{error} = $dbh->state;
$out{after_error} = $dbh->selectall_arrayref('SELECT count(*) FROM tpch.region');
$dbh->disconnect;
print JSON::PP->new->canonical->encode(\%out), "\n";
