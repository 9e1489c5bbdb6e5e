package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every {@code ./exeunt} command line in the user documentation (docs/*.md, its bash blocks, with an
 * {@code mpirun ...} prefix dropped) is one the CLI accepts: run against files that do not exist here,
 * each must fail on the missing model or data, never with a usage error (an unknown option, a missing
 * required one, a bad value). A renamed or removed flag cannot stay in the docs without this failing.
 * Benchmarks, the demo and JMH would do real work and are left out.
 */
class DocsCommandLinesTest {
    /** Commands that would run for real (they need no input files). */
    private static final Set<String> SKIPPED = Set.of("bench", "demo", "jmh", "version");
    private static final Pattern START = Pattern.compile("^\\s*(?:mpirun .*?)?(?:[A-Z_]+=\\S+ )?\\./exeunt (.*)$");
    private static final Pattern HEREDOC = Pattern.compile("cat > (\\S+) <<'EOF'\\n(.*?)\\nEOF", Pattern.DOTALL);

    @Test
    void everyDocumentedCommandLineParses(@TempDir Path tmp) throws IOException {
        List<Path> pages;
        try (Stream<Path> s = Files.list(Path.of("..", "docs"))) {
            pages = s.filter(p -> p.toString().endsWith(".md")).sorted().toList();
        }
        int checked = 0;
        for (Path page : pages) {
            String text = Files.readString(page);
            Map<String, Path> written = heredocs(text, tmp);
            for (List<String> argv : commandLines(text)) {
                if (argv.isEmpty() || SKIPPED.contains(argv.get(0))) continue;
                for (int i = 0; i + 1 < argv.size(); i++) {
                    if (argv.get(i).equals("--config") && written.containsKey(argv.get(i + 1))) argv.set(i + 1, written.get(argv.get(i + 1)).toString());
                }
                var out = new ByteArrayOutputStream();
                var err = new ByteArrayOutputStream();
                int rc = Main.run(argv.toArray(String[]::new), new PrintStream(out, true, StandardCharsets.UTF_8),
                        new PrintStream(err, true, StandardCharsets.UTF_8));
                String said = err.toString(StandardCharsets.UTF_8);
                String where = page.getFileName() + ": ./exeunt " + String.join(" ", argv) + "\n" + said;
                assertNotEquals(2, rc, "a usage error: " + where);
                assertNotEquals(0, rc, "ran without its input files (the test expects them absent): " + where);
                assertFalse(said.contains("unknown option") || said.contains("missing --"), where);
                checked++;
            }
        }
        assertTrue(checked >= 30, "found only " + checked + " command lines in docs/ (is the extraction broken?)");
    }

    /** The {@code ./exeunt} lines of the page's bash blocks, continuation lines joined, comments dropped, split as a shell would. */
    static List<List<String>> commandLines(String markdown) {
        List<List<String>> out = new ArrayList<>();
        boolean inBash = false;
        StringBuilder pending = null;
        for (String line : markdown.split("\n", -1)) {
            if (line.startsWith("```")) {
                inBash = !inBash && line.trim().equals("```bash");
                pending = null;
                continue;
            }
            if (!inBash) continue;
            if (pending == null) {
                Matcher m = START.matcher(line);
                if (!m.matches()) continue;
                pending = new StringBuilder(m.group(1));
            } else {
                pending.append(' ').append(line.trim());
            }
            String sofar = pending.toString().stripTrailing();
            if (sofar.endsWith("\\")) {
                pending = new StringBuilder(sofar.substring(0, sofar.length() - 1));
                continue;
            }
            out.add(shellWords(sofar.replaceFirst("\\s{2,}#.*$", "")));
            pending = null;
        }
        return out;
    }

    /** Words of a command line: whitespace-separated, with '...' and "..." quoting. */
    static List<String> shellWords(String line) {
        List<String> words = new ArrayList<>();
        StringBuilder w = null;
        char quote = 0;
        for (char c : line.toCharArray()) {
            if (quote != 0) {
                if (c == quote) quote = 0;
                else w.append(c);
            } else if (c == '\'' || c == '"') {
                quote = c;
                if (w == null) w = new StringBuilder();
            } else if (Character.isWhitespace(c)) {
                if (w != null) words.add(w.toString());
                w = null;
            } else {
                if (w == null) w = new StringBuilder();
                w.append(c);
            }
        }
        if (w != null) words.add(w.toString());
        return words;
    }

    /** Files the page writes with {@code cat > NAME <<'EOF'}, written under {@code dir}, by name. */
    private static Map<String, Path> heredocs(String markdown, Path dir) throws IOException {
        Map<String, Path> files = new HashMap<>();
        Matcher m = HEREDOC.matcher(markdown);
        while (m.find()) files.put(m.group(1), Files.writeString(dir.resolve(m.group(1)), m.group(2) + "\n"));
        return files;
    }
}
