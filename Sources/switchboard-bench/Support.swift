import CCrypto
import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: the clock Python's `time.monotonic_ns()` reads too, so a
/// timestamp written by the baseline's emitter process compares with one read here.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// HS256 tokens shaped like Open WebUI's (`{"id", "iat"}`), minted for the bench's users.
struct TokenMinter: Sendable {
    let secret: [UInt8]

    init(secret: String) { self.secret = Array(secret.utf8) }

    func token(user: String) -> String {
        let header = Self.base64URL(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let claims = Self.base64URL(Array(#"{"id":"\#(user)","iat":\#(Int(Date().timeIntervalSince1970))}"#.utf8))
        let signingInput = Array("\(header).\(claims)".utf8)
        var mac = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let signed = self.secret.withUnsafeBufferPointer { key in
            signingInput.withUnsafeBufferPointer { data in
                HMAC(EVP_sha256(), key.baseAddress, Int32(key.count), data.baseAddress, data.count, &mac, &length)
            }
        }
        precondition(signed != nil, "HMAC-SHA256 failed in libcrypto")
        return "\(header).\(claims).\(Self.base64URL(Array(mac.prefix(Int(length)))))"
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// The `id` claim of a token, unverified: the bench's backend answers for tokens the relay
    /// under test has already verified.
    static func userID(of token: Substring) -> String? {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var payload = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        payload += String(repeating: "=", count: (4 - payload.count % 4) % 4)
        guard let data = Data(base64Encoded: payload),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["id"] as? String
    }
}

/// CPU time and resident memory of a server process, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
struct ProcessSample: Sendable {
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    var cpuSeconds: Double
    var residentBytes: Int

    static func read(pid: Int32) -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        else { return nil }
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3): utime is field 14, stime field 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        var resident = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            resident = (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return ProcessSample(cpuSeconds: (user + system) / Self.ticksPerSecond, residentBytes: resident)
    }
}

/// CPU seconds used by a set of processes between two samples.
struct CPUMeter: Sendable {
    let pids: [Int32]
    private var start: [Int32: Double] = [:]

    init(pids: [Int32]) {
        self.pids = pids
        self.reset()
    }

    mutating func reset() {
        for pid in self.pids { self.start[pid] = ProcessSample.read(pid: pid)?.cpuSeconds ?? 0 }
    }

    func elapsed() -> Double {
        self.pids.reduce(0) { total, pid in
            total + max(0, (ProcessSample.read(pid: pid)?.cpuSeconds ?? 0) - (self.start[pid] ?? 0))
        }
    }
}

enum FileDescriptorLimit {
    /// Raises the soft limit on open files to the hard limit (children inherit it).
    @discardableResult
    static func raise() -> Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(limit.rlim_cur)
    }
}

/// A TCP port free on 127.0.0.1 at the time of asking.
func freePort() throws -> Int {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).wait()
    defer { try? channel.close().wait() }
    return channel.localAddress?.port ?? 0
}

/// One line rewritten in place on a terminal, and plain lines otherwise.
enum Progress {
    static let isTerminal = isatty(STDERR_FILENO) == 1

    static func update(_ line: String) {
        if isTerminal {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
        }
    }

    static func finish(_ line: String) {
        FileHandle.standardError.write(Data(((isTerminal ? "\r\u{1B}[K" : "") + line + "\n").utf8))
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `name` itself when it is a path, else its first match on PATH.
func resolveExecutable(_ name: String) -> String {
    guard !name.contains("/") else { return name }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) } ?? name
}

/// Waits for a child to exit, reaping it; false if it still runs at the deadline. Polls `waitpid`
/// itself: a child that Foundation has already reaped counts as exited (ECHILD).
func waitForExit(_ pid: Int32, timeout: Double) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    repeat {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid || (result == -1 && errno == ECHILD) { return true }
        usleep(10_000)
    } while Date() < deadline
    return false
}

/// SIGTERM, then SIGKILL for a child still running after `grace` seconds.
func stopChild(_ pid: Int32, grace: Double = 15) {
    kill(pid, SIGTERM)
    if !waitForExit(pid, timeout: grace) {
        kill(pid, SIGKILL)
        _ = waitForExit(pid, timeout: 5)
    }
}

/// Starts a server process with posix_spawn: a clean signal mask and default dispositions (Foundation's
/// Process passes on the spawning thread's mask, and the runtime's threads block SIGTERM, which a
/// server must not inherit), stdin from /dev/null and stdout and stderr appended to `log`.
func spawnServer(_ executable: String, _ arguments: [String], log: String) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    var allSignals = sigset_t()
    sigfillset(&allSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let path = resolveExecutable(executable)
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let result = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
    guard result == 0 else { throw BenchError("cannot start \(path): \(String(cString: strerror(result)))") }
    return pid
}
