//! bondcheck: verifies what the Linux bonding driver really does with a bond written in
//! `/etc/network/interfaces`.
//!
//! Data flows one way: [`spec`] → [`model`] (what the kernel should do) and
//! [`spec`] → [`topology`] → [`apply`] → [`observe`] (what it did), then [`checks`] → [`report`].
//! [`suite`] finds the cases, [`run`] carries them out ([`lanes`]: several at a time), [`kernel`] finds a kernel with a bonding
//! driver (the host's, a User-Mode Linux guest, or a kernel image in qemu); [`matrix`] sets the
//! reports of several kernels side by side.

pub mod apply;
pub mod arpmon;
pub mod checks;
pub mod compare;
pub mod deviation;
pub mod distribution;
pub mod driver;
pub mod error;
pub mod fail_over_mac;
pub mod failover;
pub mod frames;
pub mod html;
pub mod ifenslave;
pub mod ifupdown;
pub mod junit;
pub mod kernel;
pub mod kmsg;
pub mod ktap;
pub mod lacp;
pub mod lacpdu;
pub mod lanes;
pub mod lint;
pub mod matrix;
pub mod memory;
pub mod min_links;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod observe;
pub mod options;
pub mod partnerless;
pub mod perturb;
pub mod procfs;
pub mod report;
pub mod rlb;
pub mod run;
pub mod spec;
pub mod suite;
pub mod terminal;
pub mod timing;
pub mod topology;
pub mod traffic;
pub mod transmit;

pub use error::{Error, Result};
