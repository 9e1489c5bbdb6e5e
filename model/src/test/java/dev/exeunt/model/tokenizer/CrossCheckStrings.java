package dev.exeunt.model.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Varied test strings for comparing tokenizers: code, accents (composed and decomposed), CJK, emoji
 * sequences, whitespace runs, digits, contractions, rare characters that need byte fallback, and the
 * tokenizer's own added tokens glued to text. Deterministic for a seed.
 */
final class CrossCheckStrings {
    private CrossCheckStrings() {}

    private static final String[] FRAGMENTS = {
        "Hello", "world", "the", "The", "quick", "brown", "fox", "HTTPServer", "camelCaseName", "snake_case_name",
        "I'm", "you're", "THEY'LL", "she's", "we've", "it'd", "don't", "O'Neil",
        "def f(x):\n    return x**2\n", "for (int i = 0; i < n; i++) {", "}", "if (a != b && c >= d) return;",
        "<div class=\"x\">", "</div>", "SELECT * FROM t WHERE id = 42;", "#include <stdio.h>", "// comment", "/* block */",
        "x += 1", "a->b", "::", "===", "...", "!!!", "???", "--flag=value", "https://example.com/path?q=1&r=2",
        "naïve", "café", "cafe\u0301", "Ångström", "A\u030angstro\u0308m", "résumé", "Straße", "ﬁ ligature", "Ⅻ", "½",
        "ｆｕｌｌｗｉｄｔｈ", "Ελληνικά", "Кириллица", "עברית", "العربية", "हिन्दी", "ไทย", "ქართული",
        "日本語", "のテキスト", "中文文本", "한국어", "漢字かなカナ", "𠀀𠀁", "繁體中文",
        "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷🇯🇵", "❤️", "🏳️‍🌈", "🤖", "✔", "☃",
        "0", "7", "12", "123", "1234", "12345678", "3.14159", "1,000,000", "١٢٣٤", "٣", "2026-12-01",
        "\u0000", "\u0001", "\u001f", "\u007f", "\u200b", "\u00ad", "\ufeff", "\ue000", "\ufffd", "\uD83E\uDDEC",
        "e\u0301\u0327", "\u1e9b\u0323", "\u0958", "\uFB2C", "\u212B", "\u2126", "\u0344", "\uAC00\u11A8", "\u1100\u1161",
        "\u10FF", "\u2028", "\u0085", "\u180e", "ꙮ", "𝔘𝔫𝔦", "𝟙𝟚𝟛", "ᚠᚢᚦ", "𓀀", "\uDB40\uDC01",
    };
    private static final String[] SPACES = {
        " ", " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000", "\u2003", "    ", "\t\t", "\n\n\n", "",
    };

    /** {@code n} strings; about one in six has an added token from {@code added} glued in. */
    static List<String> generate(int n, long seed, List<String> added) {
        SplittableRandom r = new SplittableRandom(seed);
        List<String> out = new ArrayList<>(n);
        out.addAll(RoundTrip.SAMPLES);
        while (out.size() < n) {
            StringBuilder sb = new StringBuilder();
            int parts = 1 + r.nextInt(r.nextInt(4) == 0 ? 24 : 6);
            if (r.nextInt(8) == 0) sb.append(SPACES[r.nextInt(SPACES.length)]);
            for (int i = 0; i < parts; i++) {
                if (!added.isEmpty() && r.nextInt(12) == 0) {
                    sb.append(added.get(r.nextInt(added.size())));
                } else if (r.nextInt(10) == 0) {
                    sb.appendCodePoint(randomCodePoint(r));
                } else {
                    sb.append(FRAGMENTS[r.nextInt(FRAGMENTS.length)]);
                }
                sb.append(SPACES[r.nextInt(SPACES.length)]);
            }
            out.add(sb.toString());
        }
        return out;
    }

    private static int randomCodePoint(SplittableRandom r) {
        while (true) {
            int cp = switch (r.nextInt(4)) {
                case 0 -> 0x20 + r.nextInt(0x60);
                case 1 -> 0xA0 + r.nextInt(0x2000);
                case 2 -> 0x3000 + r.nextInt(0x7000);
                default -> 0x10000 + r.nextInt(0x20000);
            };
            if (Character.isDefined(cp) && Character.getType(cp) != Character.SURROGATE) return cp;
        }
    }
}
