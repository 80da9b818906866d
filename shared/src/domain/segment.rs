//! Segments (being written).
