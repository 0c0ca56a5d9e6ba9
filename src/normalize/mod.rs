//! Normalize stage: pure functions that turn vendor spellings into national standards, and
//! the declarative mapping that applies them to a raw record. No I/O, no store access.

pub mod address;
pub mod datetime;
pub mod divisions;
pub mod gender;
pub mod id_number;
pub mod mapping;
pub mod money;
pub mod name;
pub mod path;
pub mod phone;
pub mod predicate;
pub mod text;
