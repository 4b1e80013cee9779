//! Tests of session token verification, from tokens built and signed here.

mod algorithm;
mod claims;
mod detection;
mod fixtures;
mod keys;
mod shape;
