import Foundation
import Testing

@testable import NodeKit

@Suite struct JSONTests {
    @Test func valuesRoundTripAndIntegersStayExact() throws {
        let text = #"{"a":[1,-2,9223372036854775807,1.5,true,false,null],"b":"x\"y\\z\n\u00e9\ud83d\ude00","c":{}}"#
        let value = try JSONValue.parse(Array(text.utf8))
        #expect(value["a"] == .array([1, -2, .int(Int64.max), .double(1.5), true, false, .null]))
        #expect(value["b"] == .string("x\"y\\z\né😀"))
        #expect(try JSONValue.parse(value.jsonBytes) == value)
    }

    @Test func malformedDocumentsAreRefused() {
        for bad in ["", "{", "{\"a\":}", "[1,]", "{\"a\" 1}", "tru", "\"abc", "01x", "{\"a\":1} x", "\"\u{01}\"", "-"] {
            #expect(throws: (any Error).self, "\(bad)") { _ = try JSONValue.parse(Array(bad.utf8)) }
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: (any Error).self) { _ = try JSONValue.parse(Array(deep.utf8)) }
    }

    @Test func outputMatchesFoundationsReading() throws {
        let value = JSONValue.object(["k": .string("tab\there"), "n": .int(-5), "list": .array([.null, .bool(true)])])
        let foundation = try JSONSerialization.jsonObject(with: Data(value.jsonBytes)) as? [String: Any]
        #expect(foundation?["k"] as? String == "tab\there")
        #expect((foundation?["n"] as? NSNumber)?.intValue == -5)
    }
}
