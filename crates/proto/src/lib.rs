//! Wire types of the services flyteauth serves.
//!
//! The `.proto` files under `proto/` are written from the published field numbers of
//! `flyteidl.service` (Flyte 1, gRPC), `flyteidl2.auth` (Flyte 2, Connect) and the apps service of
//! `cloudidl.identity` with its `cloudidl.common` list request (API keys, Connect). Messages carry
//! prost binary codecs, proto3-JSON serde impls (pbjson) and tonic server traits.

#![allow(missing_docs, clippy::all, clippy::unwrap_used, clippy::expect_used)]

/// `flyteidl.service`: the Flyte 1 auth metadata and identity services.
pub mod flyteidl {
    /// Services of flyteadmin.
    pub mod service {
        include!(concat!(env!("OUT_DIR"), "/flyteidl.service.rs"));
        include!(concat!(env!("OUT_DIR"), "/flyteidl.service.serde.rs"));
    }
}

/// `flyteidl2.auth`: the Flyte 2 auth metadata and identity services.
pub mod flyteidl2 {
    /// Authentication services of the Flyte 2 control plane.
    pub mod auth {
        include!(concat!(env!("OUT_DIR"), "/flyteidl2.auth.rs"));
        include!(concat!(env!("OUT_DIR"), "/flyteidl2.auth.serde.rs"));
    }
}

/// `cloudidl`: the apps service behind `flyte create|get|delete api-key`.
pub mod cloudidl {
    /// Apps (confidential OAuth clients) and the service that manages them.
    pub mod identity {
        include!(concat!(env!("OUT_DIR"), "/cloudidl.identity.rs"));
        include!(concat!(env!("OUT_DIR"), "/cloudidl.identity.serde.rs"));
    }

    /// Paging, sorting and filtering shared by list calls.
    pub mod common {
        include!(concat!(env!("OUT_DIR"), "/cloudidl.common.rs"));
        include!(concat!(env!("OUT_DIR"), "/cloudidl.common.serde.rs"));
    }
}

/// Re-export of the well-known types used by the messages (`google.protobuf.Struct`).
pub use pbjson_types as wkt;
