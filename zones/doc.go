// Package zones loads RFC 1035 master files kept in git, validates them and
// reloads them when they change.
//
// A zones directory holds one file per zone. The zone's origin is the file
// name with an optional ".zone" suffix removed ("example.com.zone" serves
// "example.com."). Subdirectories are not zones; they may hold files pulled in
// with $INCLUDE. Config and docs may live beside the zones: see ZoneFiles for
// the names that are skipped. Records without a TTL, when there is no $TTL
// and no earlier explicit TTL, get 3600 seconds.
//
// This is the only package that parses zone files (with miekg/dns's
// ZoneParser). Every record keeps the file and line it came from, and every
// finding reads "file:line: message", so that `gslbctl check` and the
// server's logs point at the exact entry.
//
// $INCLUDE is confined to the zones directory: paths are resolved inside the
// fs.FS that holds the zones, so ".." and other paths that fs.ValidPath
// rejects are refused, and an absolute path such as "/inc/hosts" means
// "inc/hosts" under the zones directory. A relative path is resolved against
// the directory of the file that contains the $INCLUDE; for a zone file
// (which lives at the top of the directory) that is the zones directory
// itself. Note that os.DirFS follows symbolic links, so a symlink inside the
// zones directory can still point outside it: whoever can write the zones
// directory is trusted.
//
// Load and Check read a directory once. A Watcher keeps an immutable Set
// current as files on disk change: it re-parses only files whose bytes (or
// whose included files' bytes) changed, keeps serving the previous good
// version of a zone whose new version is rejected, and publishes each new
// Set atomically.
package zones
