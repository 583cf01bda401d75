import CLibUV
import Foundation
import SyncProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// A node's long-term key on disk: 64 raw secret-key bytes in a file of mode 0600.
public enum KeyFile {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Generates a key pair and writes it to `path` with mode 0600; refuses to overwrite.
    public static func generate(at path: String) throws -> SigningKeyPair {
        let pair = SigningKeyPair.generate()
        var secret = pair.exportSecretKey()
        defer { Sodium.zero(&secret) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            throw Failure(description: "cannot create key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let written = secret.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == secret.count, fsync(fd) == 0 else {
            throw Failure(description: "cannot write key file \(path): \(String(cString: strerror(errno)))")
        }
        return pair
    }

    /// Loads a key file, refusing one that group or others can read or write.
    public static func load(from path: String) throws -> SigningKeyPair {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Failure(description: "cannot read key file \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw Failure(
                description:
                    "key file \(path) has mode \(mode): it must be readable by its owner only (chmod 600 \(path))")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw Failure(description: "cannot open key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: SigningKeyPair.secretByteCount + 1)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count == SigningKeyPair.secretByteCount else {
            Sodium.zero(&bytes)
            throw Failure(description: "key file \(path) is not a \(SigningKeyPair.secretByteCount)-byte node key")
        }
        bytes.removeLast()
        return try SigningKeyPair(secretKey: &bytes)
    }
}

/// Unix time in milliseconds from the system clock (the wall clock fed to hybrid clocks).
public func wallClockMilliseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
}
