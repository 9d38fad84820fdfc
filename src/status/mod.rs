//! Ingress status and Events: decide what they should be (pure), then write them (leader only,
//! only on change).

mod desired;
pub mod events;
mod writer;

pub use desired::{
    LbAddress, StatusUpdate, addresses_from_service, parse_publish_address, status_updates,
};
pub use writer::{Publish, Published, StatusConfig, run};
