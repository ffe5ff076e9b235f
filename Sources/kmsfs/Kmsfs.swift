import ArgumentParser

/// The root command.
struct Kmsfs: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "kmsfs",
        abstract: "An encrypted FUSE filesystem whose AES-256-XTS key is wrapped by a KMS.",
        discussion: "State lives in the kmsfs home: --home, $KMSFS_HOME, /var/lib/kmsfs for root, else $XDG_DATA_HOME/kmsfs.",
        version: version,
        subcommands: [FsCommand.self, MountCommand.self, UmountCommand.self, StatusCommand.self, FsckCommand.self, ScrubCommand.self, SnapshotCommand.self, SecurityCommand.self, SpeedCommand.self]
    )
}

/// Options every command that touches the home takes.
struct HomeOptions: ParsableArguments {
    @Option(name: .long, help: "kmsfs home directory (default: $KMSFS_HOME, /var/lib/kmsfs for root, else $XDG_DATA_HOME/kmsfs).")
    var home: String?

    var resolved: Home { Home.resolve(home) }
}
