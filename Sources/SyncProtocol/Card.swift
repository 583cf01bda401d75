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

    public var description: String { digits }
}
