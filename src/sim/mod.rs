//! The built-in simulator: four department systems and the platform on 127.0.0.1.
pub mod variants;
