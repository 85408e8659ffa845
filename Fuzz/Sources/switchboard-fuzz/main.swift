import FuzzChecks

#if canImport(Glibc)
import Glibc
#endif

/// The check this process runs, named by `SWITCHBOARD_FUZZ_CHECK` (see `WireChecks.all`); set once,
/// before libFuzzer runs any input.
nonisolated(unsafe) private var selectedCheck: (@Sendable (UnsafeRawBufferPointer) -> Void)?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutableRawPointer?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    let name = getenv("SWITCHBOARD_FUZZ_CHECK").map { String(cString: $0) } ?? ""
    guard let check = WireChecks.all.first(where: { $0.name == name })?.check else {
        let names = WireChecks.all.map(\.name).joined(separator: ", ")
        let message = Array("switchboard-fuzz: set SWITCHBOARD_FUZZ_CHECK to one of: \(names)\n".utf8)
        _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        exit(2)
    }
    selectedCheck = check
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedCheck?(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
