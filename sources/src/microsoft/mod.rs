//! What the Microsoft 365 sources share, whichever API they read.
//!
//! Facts about Microsoft's data: the audit log's `RecordType` names ([`record_types`]),
//! read by the sources and the `enrich` transform. Core knows no plugin and no Microsoft
//! API, so these facts of the wire reference live here.
//!
//! The toolkit of a pull source (docs/plugin-authoring.md, "A new Microsoft pull source"):
//!
//! - [`api`]: each API's quota, documented limits, permission and metric prefix;
//! - [`client`]: HTTP with core's Entra token provider, the one retry rule and the
//!   classification of every failure ([`errors`]);
//! - [`budget`]: the request budget shared per (tenant, API host, quota) by every source
//!   in the process;
//! - [`paging`]: OData paging (`@odata.nextLink`, the `$skip` fallback, expired skip tokens);
//!   [`cloud_apps`]: Defender for Cloud Apps' POST-body lists, paged by their time field;
//! - [`cursor`]: a high-water mark with an overlap window and the (id, version) pairs
//!   already emitted, saved crash-safely;
//! - [`poll`]: the poll loop of a Graph collection read by a time field (windows paged
//!   whole, one acknowledged batch per page, the cursor moved by ordered settlement);
//! - [`tenants`]: the `tenants` option's checks;
//! - and core's [`siemflow_core::settlement`], which moves a checkpoint only over
//!   delivered batches.
//!
//! Times: Management Activity's `CreationTime` is zone-less ISO 8601 in UTC, usually
//! without a fraction; Graph writes seven fractional digits; some Exchange admin fields
//! and Intune's `ActivityDate` use .NET's en-US form (`12/12/2022 3:57:57 PM`, UTC).
//! `siemflow_core::event_time` reads every one of these forms as generic date forms, so
//! sinks and mappers need no Microsoft knowledge to read them.

pub mod api;
pub mod budget;
pub mod client;
pub mod cloud_apps;
pub mod cursor;
pub mod errors;
pub mod paging;
pub mod poll;
#[cfg(test)]
mod recipe;
pub mod record_types;
pub mod tenants;

pub use api::ApiProfile;
pub use budget::{BudgetKey, RequestBudget, Window};
pub use client::{ApiClient, ApiRequest, ApiResponse, ClientSettings, RetryRules, ThrottleScope};
pub use cursor::{CursorStore, OverlapCursor, RecordVersion};
pub use errors::{ApiError, ErrorClass};
pub use paging::{ODataPager, Page, PagesAhead, PagingError};
pub use record_types::record_type_name;

#[cfg(test)]
pub(crate) mod tests;
