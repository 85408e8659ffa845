import FuzzChecks
import Foundation
import Testing

/// Every input in `Fuzz/Corpus/<check>/` (the seeds, and every input a fuzzer found that broke a
/// check once) goes through its check on every test run, so a decoder that regresses stops here.
@Suite("Fuzz corpus replayed through the decoders' checks")
struct CorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus")

    @Test(arguments: WireChecks.all.map(\.name))
    func replay(_ name: String) throws {
        let check = try #require(WireChecks.all.first { $0.name == name }?.check)
        let folder = Self.corpus.appendingPathComponent(name)
        let files = try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
        #expect(!files.isEmpty, "no seeds for \(name) in \(folder.path)")
        for file in files {
            let bytes = try Data(contentsOf: file)
            bytes.withUnsafeBytes { check($0) }
        }
    }
}
