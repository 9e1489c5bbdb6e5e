package dev.exeunt.tensor.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashSet;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The CUDA C sources of the kernel modules (resources under {@code dev/exeunt/tensor/cuda/kernels/}). */
final class KernelSources {
    private KernelSources() {}

    /** The modules; each is compiled (with {@code common.cu} prepended) into one CUDA module. */
    enum Module {
        ELEMENTWISE("elementwise"), ROWS("rows"), ATTENTION("attention"), MISC("misc");

        final String file;

        Module(String file) {
            this.file = file;
        }
    }

    private static final String DIR = "kernels/";
    private static final Pattern KERNEL = Pattern.compile("extern\\s+\"C\"\\s+__global__\\s+void\\s+(\\w+)\\s*\\(");

    /** Raw text of one resource file. */
    static String resource(String file) {
        try (InputStream in = KernelSources.class.getResourceAsStream(DIR + file + ".cu")) {
            if (in == null) throw new IllegalStateException("missing kernel source " + DIR + file + ".cu on the class path");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** What NVRTC compiles for a module: the common prelude, then the module. */
    static String fullSource(Module m) {
        return "// ---- common.cu\n" + resource("common") + "\n// ---- " + m.file + ".cu\n" + resource(m.file);
    }

    /** The extern "C" kernel names a source defines. */
    static Set<String> kernelNames(String source) {
        Set<String> names = new LinkedHashSet<>();
        Matcher mt = KERNEL.matcher(source);
        while (mt.find()) names.add(mt.group(1));
        return names;
    }
}
