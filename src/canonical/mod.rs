//! Pure functions over request bodies: no I/O, no clocks, no secrets. Each
//! is fuzzed or property-tested on its own.
//! - `xml`: TeamDrive's `<requesttime>` / `<distributor>` edits, byte-exact.

pub mod xml;
