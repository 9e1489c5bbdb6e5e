package dev.exeunt.model.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class ProgressBarTest {
    final ByteArrayOutputStream buf = new ByteArrayOutputStream();
    final PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8);
    final AtomicLong now = new AtomicLong(1_000_000_000L);

    String text() {
        return buf.toString(StandardCharsets.UTF_8);
    }

    void advanceMillis(long ms) {
        now.addAndGet(ms * 1_000_000L);
    }

    @Test
    void terminalRedrawsInPlaceAtMostTenTimesASecond() {
        ProgressBar bar = ProgressBar.builder("tokenize").total(10_000_000).unit(ProgressBar.Unit.BYTES)
                .out(out).terminal(true).clock(now::get).build();
        int drawsAtStart = count(text(), '\r');
        assertEquals(1, drawsAtStart);
        // 1000 adds within 50 ms: no redraw
        for (int i = 0; i < 1000; i++) {
            bar.add(1000);
        }
        advanceMillis(50);
        bar.add(0);
        assertEquals(1, count(text(), '\r'));
        // one second of adds every 10 ms: about 10 redraws
        for (int i = 0; i < 100; i++) {
            advanceMillis(10);
            bar.add(40_000);
        }
        int draws = count(text(), '\r');
        assertTrue(draws >= 10 && draws <= 12, "draws: " + draws);
        assertFalse(text().contains("\n"));
        String last = text().substring(text().lastIndexOf('\r') + 1);
        assertTrue(last.startsWith("tokenize ["), last);
        assertTrue(last.contains("/10.0 MB"), last);
        assertTrue(last.contains("MB/s"), last);
        assertTrue(last.contains("ETA"), last);
        bar.close();
        assertTrue(text().endsWith(System.lineSeparator()));
        String fin = text().substring(text().lastIndexOf('\r') + 1).strip();
        assertTrue(fin.contains("50.0%"), fin);
        assertFalse(fin.contains("ETA"), fin);
        int len = text().length();
        bar.close();
        bar.add(5);
        assertEquals(len, text().length(), "nothing after close");
    }

    @Test
    void plainModePrintsLinesEveryFewSeconds() {
        ProgressBar bar = ProgressBar.builder("docs").total(1000).itemName("docs").out(out).terminal(false)
                .plainInterval(5000).clock(now::get).build();
        for (int i = 0; i < 1000; i++) {
            advanceMillis(20); // 20 s in all
            bar.add(1);
        }
        bar.close();
        String[] lines = text().split("\\R");
        // one line per 5 s (at 5, 10, 15, 20 s) plus the final line
        assertTrue(lines.length >= 4 && lines.length <= 5, List.of(lines).toString());
        assertFalse(text().contains("\r"));
        String fin = lines[lines.length - 1];
        assertTrue(fin.startsWith("docs: 100.0% 1,000/1,000 docs"), fin);
        assertTrue(fin.contains("50.0 docs/s"), fin);
        assertTrue(fin.contains("elapsed 0:20"), fin);
        assertTrue(lines[0].contains("ETA 0:15"), lines[0]);
    }

    @Test
    void unknownTotalShowsCountRateAndDetail() {
        AtomicLong tokens = new AtomicLong(42);
        ProgressBar bar = ProgressBar.builder("read").unit(ProgressBar.Unit.BYTES).out(out).terminal(false)
                .clock(now::get).detail(() -> tokens.get() + " tokens").build();
        bar.add(3_000_000);
        advanceMillis(2000);
        String line = bar.line();
        assertEquals("read: 3.0 MB, 1.50 MB/s, elapsed 0:02, 42 tokens", line);
        bar.close();
        assertEquals(line + System.lineSeparator(), text());
    }

    @Test
    void addIsThreadSafe() throws InterruptedException {
        ProgressBar bar = ProgressBar.builder("x").total(400_000).out(out).terminal(true).terminalInterval(1).build();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            ts.add(Thread.ofPlatform().start(() -> {
                for (int i = 0; i < 100_000; i++) {
                    bar.add(1);
                }
            }));
        }
        for (Thread t : ts) {
            t.join();
        }
        bar.close();
        assertEquals(400_000, bar.current());
        String fin = text().substring(text().lastIndexOf('\r') + 1);
        assertTrue(fin.contains("100.0% 400,000/400,000"), fin);
    }

    @Test
    void durations() {
        assertEquals("0:00", ProgressBar.duration(0));
        assertEquals("1:05", ProgressBar.duration(65));
        assertEquals("1:00:01", ProgressBar.duration(3601));
        assertEquals("?", ProgressBar.duration(Double.POSITIVE_INFINITY));
    }

    static int count(String s, char c) {
        int n = 0;
        for (int i = 0; i < s.length(); i++) {
            if (s.charAt(i) == c) {
                n++;
            }
        }
        return n;
    }
}
