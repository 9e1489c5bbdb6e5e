package dev.exeunt.model.tokenizer;

import java.util.List;

/** Strings for round-trip tests. */
final class RoundTrip {
    private RoundTrip() {}

    static final List<String> SAMPLES = List.of(
            "",
            "Hello world",
            " hello\n\nworld",
            "   leading spaces and trailing   ",
            "\t\ttabs\tand\r\nCRLF\r\n\r\n\n\n\n",
            "I'M fine, you're ok; they'LL see what's what",
            "12345 678.9 ١٢٣٤ ½ Ⅻ 3.14159265358979",
            "public static void main(String[] args) {\n    System.out.println(\"hi\" + args[0]);\n}\n",
            "日本語のテキスト、中文文本。한국어 텍스트",
            "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵",
            "naïve café — “quotes” … ∑∫√ ≠ ≤",
            "x\u00a0y\u2003z\u3000w\u200bq",
            "control \u0000\u0001\u001f\u007f chars",
            "<|endoftext|> in text <s> and </s>",
            "a",
            " ",
            "\n",
            "Ω",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛");
}
