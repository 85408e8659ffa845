import NIOConcurrencyHelpers

/// A secret that SIGHUP may replace while the node runs.
package final class SecretBox: Sendable {
    private let box: NIOLockedValueBox<String?>

    package init(_ value: String?) {
        box = NIOLockedValueBox(value)
    }

    package var value: String? {
        get { box.withLockedValue { $0 } }
        set { box.withLockedValue { $0 = newValue } }
    }
}
