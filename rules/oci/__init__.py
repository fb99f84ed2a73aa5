"""OCI images: base images, daemonless assembly, loading into Docker, pushing (`graphbuild.rules.oci`)."""
