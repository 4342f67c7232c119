//! What the Microsoft 365 sources know about Microsoft's data, whichever API delivers it
//! (the Management Activity API today; Graph and Defender sources will share it). Core
//! knows no plugin and no Microsoft API, so these facts of the wire reference live here;
//! the `enrich` transform reads them from here too.
//!
//! Times: Management Activity's `CreationTime` is zone-less ISO 8601 in UTC, usually
//! without a fraction; Graph writes seven fractional digits; some Exchange admin fields
//! and Intune's `ActivityDate` use .NET's en-US form (`12/12/2022 3:57:57 PM`, UTC).
//! `siemflow_core::event_time` reads every one of these forms as generic date forms, so
//! sinks and mappers need no Microsoft knowledge to read them.

pub mod record_types;

pub use record_types::record_type_name;
