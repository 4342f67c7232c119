//! Tests of the file sink, driven without the engine.
