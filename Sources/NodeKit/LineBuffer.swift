/// Splits a byte stream into newline-terminated lines, refusing lines over a size limit.
public struct LineBuffer: Sendable {
    public let maxLineBytes: Int
    private var buffer: [UInt8] = []

    public struct LineTooLong: Error, CustomStringConvertible {
        public let limit: Int
        public var description: String { "line longer than \(limit) bytes" }
    }

    public init(maxLineBytes: Int = 64 * 1024) { self.maxLineBytes = maxLineBytes }

    /// Appends bytes and returns every complete line (without the newline or a trailing CR).
    public mutating func append(_ bytes: [UInt8]) throws(LineTooLong) -> [[UInt8]] {
        buffer += bytes
        var lines: [[UInt8]] = []
        var start = 0
        while let newline = buffer[start...].firstIndex(of: 10) {
            var end = newline
            if end > start && buffer[end - 1] == 13 { end -= 1 }
            if end - start > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
            lines.append(Array(buffer[start..<end]))
            start = newline + 1
        }
        buffer.removeFirst(start)
        if buffer.count > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
        return lines
    }
}
