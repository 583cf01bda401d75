/// Why a scanned or typed card number was refused.
public enum CardError: Error, Equatable, Sendable, CustomStringConvertible {
    case notThirteenDigits(String)
    case badCheckDigit(String, expected: UInt8)

    public var description: String {
        switch self {
        case .notThirteenDigits(let text): return "card number '\(text)' is not 13 digits (EAN-13)"
        case .badCheckDigit(let text, let expected):
            return "card number \(text) has a wrong check digit (expected \(expected)); rescan or retype the card"
        }
    }
}

/// A loyalty card number: EAN-13 digits with a verified check digit.
public struct CardNumber: Hashable, Sendable, CustomStringConvertible {
    public let digits: String

    public init(_ text: String) throws(CardError) {
        let bytes = Array(text.utf8)
        guard bytes.count == 13, bytes.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw .notThirteenDigits(text) }
        let expected = CardNumber.checkDigit(forFirstTwelve: bytes.prefix(12).map { $0 - 48 })
        guard bytes[12] - 48 == expected else { throw .badCheckDigit(text, expected: expected) }
        digits = text
    }

    /// The EAN-13 check digit: weights 1,3,1,3,… over the first twelve digits.
    public static func checkDigit(forFirstTwelve digits: [UInt8]) -> UInt8 {
        var sum = 0
        for (index, digit) in digits.enumerated() { sum += Int(digit) * (index % 2 == 0 ? 1 : 3) }
        return UInt8((10 - sum % 10) % 10)
    }

    /// The card numbered `serial` in a two-digit `prefix` range: `prefix`, the serial in ten
    /// digits, the check digit (how tests, benchmarks and the simulator issue cards).
    /// The digits are written into one buffer (a million cards are issued when the
    /// simulator loads its members), and the result is checked as any typed card is.
    public static func issued(prefix: String, serial: Int) -> CardNumber {
        let head = Array(prefix.utf8)
        precondition(
            head.count == 2 && head.allSatisfy { $0 >= 48 && $0 <= 57 } && serial >= 0 && serial < 10_000_000_000)
        var digits = [UInt8](repeating: 0, count: 13)
        digits[0] = head[0] - 48
        digits[1] = head[1] - 48
        var rest = serial
        for index in stride(from: 11, through: 2, by: -1) {
            digits[index] = UInt8(rest % 10)
            rest /= 10
        }
        digits[12] = checkDigit(forFirstTwelve: Array(digits[..<12]))
        return try! CardNumber(String(decoding: digits.map { $0 + 48 }, as: UTF8.self))
    }

    public var description: String { digits }
}

/// What a barcode scanner read: an EAN-13 card barcode, or a QR code whose payload carries
/// the card number as `LOYALTY:<13 digits>` (the form printed on wallet cards).
public enum ScanCode {
    public static let qrPrefix = "LOYALTY:"

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case card(CardError)
        case unknownFormat(String)

        public var description: String {
            switch self {
            case .card(let error): return error.description
            case .unknownFormat(let text):
                let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
                return "scanned code '\(shown)' is neither a loyalty card barcode nor a loyalty QR code"
            }
        }
    }

    /// The card number in a scanned code, check digit verified.
    public static func card(fromScan raw: String) throws(Failure) -> CardNumber {
        let text = String(
            raw.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
        let digits: String
        if text.uppercased().hasPrefix(qrPrefix) {
            digits = String(text.dropFirst(qrPrefix.count))
        } else if text.utf8.count == 13, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) {
            digits = text
        } else {
            throw .unknownFormat(text)
        }
        do { return try CardNumber(digits) } catch { throw .card(error) }
    }
}
