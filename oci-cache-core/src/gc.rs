//! Eviction (garbage collection) that runs while the cache serves: least recently used
//! images first, manifests and their blobs together, never a blob being read; by size
//! (high and low watermarks) and by age. `plan` decides; `Engine::collect_garbage` scans
//! storage, asks `plan`, and deletes.

mod plan;

pub use plan::{plan, GcPlan, GcPolicy, StoredBlob};
