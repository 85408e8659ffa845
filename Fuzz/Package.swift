// swift-tools-version:5.4
import PackageDescription

// The fuzz target, a package of its own: it is built only with libFuzzer and ASan
// (`scripts/fuzz`), and libFuzzer provides its `main`. Tools version 5.4 on purpose: later ones
// rename an executable's entry point to `<module>_main`, which this program does not have.
let package = Package(
    name: "SwitchboardFuzz",
    dependencies: [
        .package(name: "Switchboard", path: "..")
    ],
    targets: [
        .executableTarget(
            name: "switchboard-fuzz",
            dependencies: [.product(name: "FuzzChecks", package: "Switchboard")],
            swiftSettings: [.unsafeFlags(["-swift-version", "6", "-parse-as-library"])]
        )
    ]
)
