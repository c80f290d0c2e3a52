//! Generates the prost messages, tonic services and pbjson (proto3 JSON) impls.
//!
//! protoc comes from `$PROTOC` when set, else from the vendored binary, so a fresh
//! machine builds without a system protobuf compiler.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/flyteidl/service/auth.proto",
    "proto/flyteidl/service/identity.proto",
    "proto/flyteidl2/auth/auth_service.proto",
    "proto/flyteidl2/auth/identity.proto",
    "proto/cloudidl/common/list.proto",
    "proto/cloudidl/identity/enums.proto",
    "proto/cloudidl/identity/app_definition.proto",
    "proto/cloudidl/identity/app_payload.proto",
    "proto/cloudidl/identity/app_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("descriptor.bin");
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let include = protoc_bin_vendored::include_path()?;
    let include = include
        .to_str()
        .ok_or("vendored protoc include path is not UTF-8")?;

    let mut config = prost_build::Config::new();
    config
        .protoc_executable(protoc)
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types");

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_with_config(config, PROTOS, &["proto", include])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".flyteidl.service", ".flyteidl2.auth", ".cloudidl"])?;

    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
