#!/usr/bin/perl
# Write a small MaxMind DB for the report tests: `perl mmdb_write.pl OUT TYPE`
# with lines `CIDR JSON` on stdin (TYPE e.g. GeoLite2-ASN, GeoLite2-Country).
# The record shapes are those of the real databases; the types below are the
# fields they use.
use strict;
use warnings;
use JSON::PP;
use MaxMind::DB::Writer::Tree;

my ($out, $type) = @ARGV;
die "usage: $0 OUT TYPE < 'CIDR JSON' lines\n" unless defined $type;
my %types = (
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
    country                        => 'map',
    registered_country             => 'map',
    iso_code                       => 'utf8_string',
    names                          => 'map',
    en                             => 'utf8_string',
    geoname_id                     => 'uint32',
    asn                            => 'utf8_string',
    as_name                        => 'utf8_string',
    country_code                   => 'utf8_string',
);
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 24,
    database_type         => $type,
    languages             => ['en'],
    # Tests use documentation and benchmarking ranges, which the writer
    # would otherwise drop as reserved.
    remove_reserved_networks => 0,
    description           => { en => "tsusen test $type" },
    map_key_type_callback => sub { $types{ $_[0] } // die "no type for $_[0]\n" },
);
while (my $line = <STDIN>) {
    chomp $line;
    next if $line =~ /^\s*(#|$)/;
    my ($cidr, $json) = split /\s+/, $line, 2;
    $tree->insert_network($cidr, decode_json($json));
}
open my $fh, '>:raw', $out or die "cannot write $out: $!\n";
$tree->write_tree($fh);
close $fh or die "cannot write $out: $!\n";
