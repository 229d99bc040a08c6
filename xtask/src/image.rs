//! `cargo xtask image`: the container image of the release `tributary`, assembled with buildah from scratch (no
//! base image is pulled: no registry is reachable here), and written under the target folder as an OCI archive
//! and a docker-archive, each read back with `skopeo inspect`.
//!
//! The image holds the binary with the shared libraries it links (as `ldd` lists them), CA certificates, a
//! non-root user (65532), the config folder `/etc/tributary` and the spool `/var/lib/tributary` (a declared
//! volume). Its command is the one the Kubernetes manifest runs.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use xshell::{Shell, cmd};

/// The user the image runs as.
const USER: &str = "65532";

/// What the image runs: `tributary` with these arguments.
const COMMAND: [&str; 9] = [
    "--config",
    "/etc/tributary",
    "serve",
    "--listen",
    "0.0.0.0:8080",
    "--admin-listen",
    "0.0.0.0:9090",
    "--spool-dir",
    "/var/lib/tributary",
];

/// The archives `image` wrote.
pub struct Archives {
    /// The OCI archive.
    pub oci: PathBuf,
    /// The docker-archive, for `docker load`.
    pub docker: PathBuf,
}

/// Builds the release binary and the image; returns where the archives are.
pub fn image(sh: &Shell) -> anyhow::Result<Archives> {
    for tool in ["buildah", "skopeo", "ldd"] {
        if cmd!(sh, "which {tool}").quiet().ignore_stdout().run().is_err() {
            bail!("`cargo xtask image` needs {tool}: apt-get install buildah skopeo (`.ci/run` installs them)");
        }
    }
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} build --release --package runner --bin tributary").run()?;
    let binary = crate::target_dir().join("release/tributary");
    let out = crate::target_dir().join("image");
    std::fs::create_dir_all(&out)?;
    let name = format!("tributary-image-{}", std::process::id());
    let container = cmd!(sh, "buildah from --name {name} scratch").read().context("buildah from scratch")?;
    let built = fill(sh, &container, &binary).and_then(|()| configure(sh, &container));
    let committed = built.and_then(|()| {
        cmd!(sh, "buildah commit --quiet {container} localhost/tributary:latest").quiet().ignore_stdout().run()?;
        Ok(())
    });
    let _ = cmd!(sh, "buildah rm {container}").quiet().ignore_stdout().run();
    committed?;
    let archives = Archives { oci: out.join("tributary.oci.tar"), docker: out.join("tributary.docker.tar") };
    for archive in [&archives.oci, &archives.docker] {
        let _ = std::fs::remove_file(archive);
    }
    let (oci, docker) = (archives.oci.display().to_string(), archives.docker.display().to_string());
    cmd!(sh, "buildah push --quiet localhost/tributary:latest oci-archive:{oci}:tributary:latest").run()?;
    cmd!(sh, "buildah push --quiet localhost/tributary:latest docker-archive:{docker}:tributary:latest").run()?;
    for transport in [format!("oci-archive:{oci}"), format!("docker-archive:{docker}")] {
        let inspected = cmd!(sh, "skopeo inspect --config {transport}").read()?;
        for wanted in [format!("\"User\": \"{USER}:{USER}\""), "\"/var/lib/tributary\": {}".to_owned()] {
            if !inspected.contains(&wanted) {
                bail!("skopeo inspect {transport} lacks {wanted}:\n{inspected}");
            }
        }
    }
    println!("image: {oci}\nimage: {docker}");
    Ok(archives)
}

/// Puts the binary, its libraries, CA certificates, the user and the folders into the container's root.
fn fill(sh: &Shell, container: &str, binary: &Path) -> anyhow::Result<()> {
    let root = PathBuf::from(cmd!(sh, "buildah mount {container}").read()?);
    let copy = |from: &Path, to: &str| -> anyhow::Result<()> {
        let target = root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("a file's folder"))?;
        // Symbolic links are followed: the image gets the file under the name the loader asks for.
        std::fs::copy(from, &target).with_context(|| format!("copying {} into the image", from.display()))?;
        Ok(())
    };
    copy(binary, "/usr/local/bin/tributary")?;
    let binary_text = binary.display().to_string();
    for library in linked_libraries(&cmd!(sh, "ldd {binary_text}").read()?) {
        copy(Path::new(&library), &library)?;
    }
    copy(Path::new("/etc/ssl/certs/ca-certificates.crt"), "/etc/ssl/certs/ca-certificates.crt")?;
    let write = |path: &str, text: &str| std::fs::write(root.join(path), text);
    std::fs::create_dir_all(root.join("etc"))?;
    write(
        "etc/passwd",
        &format!("root:x:0:0:root:/root:/sbin/nologin\ntributary:x:{USER}:{USER}::/var/lib/tributary:/sbin/nologin\n"),
    )?;
    write("etc/group", &format!("root:x:0:\ntributary:x:{USER}:\n"))?;
    for folder in ["etc/tributary", "var/lib/tributary", "tmp"] {
        std::fs::create_dir_all(root.join(folder))?;
    }
    let (spool, tmp) = (root.join("var/lib/tributary"), root.join("tmp"));
    cmd!(sh, "chown {USER}:{USER} {spool}").run()?;
    cmd!(sh, "chmod 1777 {tmp}").run()?;
    cmd!(sh, "buildah umount {container}").quiet().ignore_stdout().run()?;
    Ok(())
}

/// The files `ldd` says a binary loads: `NAME => /path (address)` and the loader's `/path (address)`.
fn linked_libraries(ldd: &str) -> Vec<String> {
    ldd.lines()
        .filter_map(|line| {
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// The image's user, volume, ports, environment, entry point and command.
fn configure(sh: &Shell, container: &str) -> anyhow::Result<()> {
    let command = format!("[{}]", COMMAND.map(|a| format!("{a:?}")).join(","));
    let entrypoint = "[\"/usr/local/bin/tributary\"]";
    let user = format!("{USER}:{USER}");
    cmd!(
        sh,
        "buildah config --user {user} --workingdir /var/lib/tributary --volume /var/lib/tributary
            --port 8080 --port 9090 --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
            --entrypoint {entrypoint} --cmd {command}
            --label org.opencontainers.image.title=tributary
            --label org.opencontainers.image.description=Segment-compatible-event-router-to-AWS-Kinesis
            {container}"
    )
    .run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_libraries_ldd_names() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(super::linked_libraries(ldd), ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]);
    }
}
