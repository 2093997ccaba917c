//! Pure functions over request bodies: no I/O, no clocks, no secrets. Each
//! is fuzzed or property-tested on its own.
//! - `pyjson`: JSON as CPython's `json.dumps(…, sort_keys=True)` writes it (the TTS checksum).
//! - `xml`: TeamDrive's `<requesttime>` / `<distributor>` edits, byte-exact.

pub mod pyjson;
pub mod xml;
