#![forbid(unsafe_code)]
#![allow(dead_code)]
mod client;
mod clock;
mod config;
mod kubeconfig;
mod objects;
mod pods;
fn main() {}
