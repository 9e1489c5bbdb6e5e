package dev.exeunt.model.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The java.util.regex versions split exactly like Python's {@code regex} module (expected pieces made with it). */
class PreTokenizerPatternsTest {

    static List<String> split(Pattern p, String s) {
        List<String> out = new ArrayList<>();
        Matcher m = p.matcher(s);
        while (m.find()) out.add(m.group());
        return out;
    }

    @Test
    void matchesReferenceRegexEngine() throws IOException {
        JsonNode cases = new ObjectMapper().readTree(HfTokenizerJsonTest.resource("pretokenize-cases.json").toFile());
        Pattern gpt2 = PreTokenizerPatterns.gpt2();
        Pattern llama3 = PreTokenizerPatterns.compile(PreTokenizerPatterns.LLAMA3);
        int n = 0;
        for (JsonNode c : cases) {
            String text = c.get("text").asText();
            List<String> g = new ArrayList<>(), l = new ArrayList<>();
            c.get("gpt2").forEach(x -> g.add(x.asText()));
            c.get("llama3").forEach(x -> l.add(x.asText()));
            assertEquals(g, split(gpt2, text), "gpt2: " + text);
            assertEquals(l, split(llama3, text), "llama3: " + text);
            assertEquals(text, String.join("", g));
            n++;
        }
        assertEquals(18, n);
    }
}
