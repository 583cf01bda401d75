import Synchronization

/// SQL put together at run time from literal parts (a multi-row INSERT from its statement,
/// one row's VALUES and its suffix), kept for the life of the process under the statement's
/// and suffix's addresses and the (short) VALUES text. The same parts give the same string
/// object every time, which
/// `SQLiteConnection` then finds by address as it finds a literal, instead of building the
/// text and hashing it at every call (an insert of a slot write or a log entry runs
/// millions of times a simulated day). Parts that are not literals are put together anew.
enum ComposedSQL {
    private struct Parts: Hashable {
        let statement: UInt
        let values: String
        /// 0 for no suffix.
        let suffix: UInt
        let rows: Int
    }

    private struct Kept {
        var texts: [Parts: String] = [:]
        /// Where each kept text's bytes are: never freed, so never another text's.
        var addresses: Set<UInt> = []
    }

    private static let kept = Mutex(Kept())

    /// `statement VALUES values, values, … suffix` with `rows` copies of `values`.
    static func insert(_ statement: String, values: String, suffix: String, rows: Int) -> String {
        guard let statementAt = SQLiteConnection.literalAddress(statement),
            let suffixAt = suffix.isEmpty ? 0 : SQLiteConnection.literalAddress(suffix)
        else { return text(statement, values, suffix, rows) }
        let key = Parts(statement: statementAt, values: values, suffix: suffixAt, rows: rows)
        return kept.withLock { kept in
            if let known = kept.texts[key] { return known }
            let made = text(statement, values, suffix, rows)
            guard let address = SQLiteConnection.address(of: made) else { return made }
            kept.texts[key] = made
            kept.addresses.insert(address)
            return made
        }
    }

    /// Whether `address` is where a kept text's bytes are.
    static func isKept(_ address: UInt) -> Bool {
        kept.withLock { $0.addresses.contains(address) }
    }

    private static func text(_ statement: String, _ values: String, _ suffix: String, _ rows: Int) -> String {
        "\(statement) VALUES \(Array(repeating: values, count: rows).joined(separator: ", ")) \(suffix)"
    }
}
