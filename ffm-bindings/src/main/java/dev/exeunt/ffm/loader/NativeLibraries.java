package dev.exeunt.ffm.loader;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * Finds and opens the shared libraries the bindings need (CUDA runtime and driver, cuBLAS, NVRTC, NCCL, Open MPI).
 *
 * <p>Search order for a library {@code name}:
 * <ol>
 *   <li>an explicit path: {@code -Dexeunt.<name>.path=/full/path} or the environment variable {@code EXEUNT_<NAME>_PATH}
 *       (when set, nothing else is tried: a wrong path is an error, not a hint);</li>
 *   <li>each entry of {@code LD_LIBRARY_PATH};</li>
 *   <li>the usual CUDA folders ({@code $CUDA_HOME/lib64}, {@code /usr/local/cuda/lib64}, {@code /usr/local/cuda-*}{@code /lib64},
 *       {@code /opt/cuda/lib64}, {@code /usr/local/nvidia/lib64}, {@code /usr/lib/x86_64-linux-gnu}, {@code /usr/lib64}, ...)
 *       and the library's own extra folders;</li>
 *   <li>NVIDIA's pip wheels: {@code site-packages/nvidia/*}{@code /lib} of every Python install that can be seen
 *       ({@code /usr/lib/python3*}, {@code /usr/local/lib/python3*}, {@code ~/.local}, {@code /opt/conda}, {@code $VIRTUAL_ENV},
 *       {@code $CONDA_PREFIX}, and what {@code python3 -c 'import site; ...'} reports);</li>
 *   <li>the system loader by soname ({@code dlopen("libcuda.so.1")}: ld.so.cache, RUNPATH, ...).</li>
 * </ol>
 * In each directory the spec's file names are tried in order (newest soname first), then versioned files matching
 * its glob prefix. A file that exists but fails to open is recorded and the search goes on. Dependencies are opened
 * first from the same directory (libcublasLt before libcublas, libnvrtc-builtins before libnvrtc).
 *
 * <p>Results, failures included, are cached per name. A missing library gives one {@link NativeLibraryException}
 * whose message lists every place looked at.
 */
public final class NativeLibraries {

    private NativeLibraries() {
    }

    private static final int RTLD_NOW = 0x2;
    private static final int RTLD_GLOBAL = 0x100;

    private static final Map<String, LibrarySpec> KNOWN = new ConcurrentHashMap<>();
    private static final Map<String, Outcome> CACHE = new ConcurrentHashMap<>();

    static {
        register(LibrarySpec.of("cudart", "libcudart.so.13", "libcudart.so.12", "libcudart.so")
                .withPipPackages("cuda_runtime", "cu13", "cu12"));
        register(LibrarySpec.of("cuda", "libcuda.so.1", "libcuda.so").withGlobPrefix(null));
        register(LibrarySpec.of("cublasLt", "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so")
                .withPipPackages("cublas", "cu13", "cu12"));
        register(LibrarySpec.of("cublas", "libcublas.so.13", "libcublas.so.12", "libcublas.so")
                .withPipPackages("cublas", "cu13", "cu12").withDependencies("cublasLt"));
        register(LibrarySpec.of("nvrtc-builtins").withPipPackages("cuda_nvrtc", "cu13", "cu12"));
        register(LibrarySpec.of("nvrtc", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so")
                .withPipPackages("cuda_nvrtc", "cu13", "cu12").withOptionalDependencies("nvrtc-builtins"));
        register(LibrarySpec.of("nccl", "libnccl.so.2", "libnccl.so").withPipPackages("nccl", "cu13", "cu12"));
        // Open MPI only (libmpi.so.40): MPICH's libmpi.so.12 has another ABI (integer handles), so no glob and no bare
        // libmpi.so (which update-alternatives may point at MPICH). RTLD_GLOBAL for the MCA plug-ins Open MPI dlopens.
        register(LibrarySpec.of("mpi", "libmpi.so.40").withGlobPrefix(null).withGlobal(true)
                .withExtraDirectories("/usr/lib/x86_64-linux-gnu/openmpi/lib", "/usr/lib64/openmpi/lib",
                        "/usr/local/mpi/lib", "/opt/hpcx/ompi/lib", "/opt/openmpi/lib", "/usr/local/openmpi/lib"));
    }

    /** Adds or replaces the spec used for {@code spec.name()}; clears that name's cached result. */
    public static void register(LibrarySpec spec) {
        KNOWN.put(spec.name(), spec);
        CACHE.remove(spec.name());
    }

    /** The spec for a name: a registered one, else {@code lib<name>.so.*} / {@code lib<name>.so}. */
    public static LibrarySpec spec(String name) {
        LibrarySpec spec = KNOWN.get(name);
        return spec != null ? spec : LibrarySpec.of(name, "lib" + name + ".so");
    }

    /** An opened library. */
    public record Loaded(String name, Path path, SymbolLookup lookup) {
    }

    private record Outcome(Loaded loaded, NativeLibraryException failure) {
    }

    /**
     * Opens the library (and its dependencies) once and returns its symbols.
     *
     * @throws NativeLibraryException when it cannot be found or opened (the same exception on every later call)
     */
    public static SymbolLookup load(String name) {
        return loaded(name).lookup();
    }

    /** Like {@link #load(String)}, also telling which file was opened. */
    public static Loaded loaded(String name) {
        Outcome outcome = CACHE.get(name);
        if (outcome == null) {
            synchronized (NativeLibraries.class) {
                outcome = CACHE.get(name);
                if (outcome == null) {
                    try {
                        LibrarySpec spec = spec(name);
                        outcome = new Outcome(open(spec, explicitPath(spec), defaultSearchDirectories(spec), true), null);
                    } catch (NativeLibraryException e) {
                        outcome = new Outcome(null, e);
                    }
                    CACHE.put(name, outcome);
                }
            }
        }
        if (outcome.failure() != null) {
            throw outcome.failure();
        }
        return outcome.loaded();
    }

    /** Whether {@link #load(String)} succeeds. Never throws. */
    public static boolean isAvailable(String name) {
        return unavailableReason(name) == null;
    }

    /** Why {@link #load(String)} fails, or null when the library opens. Never throws. */
    public static String unavailableReason(String name) {
        try {
            loaded(name);
            return null;
        } catch (NativeLibraryException e) {
            return e.getMessage();
        } catch (RuntimeException | LinkageError e) {
            return name + ": " + e;
        }
    }

    /**
     * A lookup that opens the library on its first use, for the generated {@code *_h} classes: reading an enum
     * constant never loads anything, the first downcall does (and fails with {@link NativeLibraryException}).
     */
    public static SymbolLookup symbolLookup(String name) {
        return symbol -> load(name).find(symbol);
    }

    /** The explicit path from {@code -Dexeunt.<name>.path}, else {@code EXEUNT_<NAME>_PATH}, else null. */
    public static String explicitPath(LibrarySpec spec) {
        String value = System.getProperty(spec.propertyName());
        if (value == null || value.isBlank()) {
            value = System.getenv(spec.environmentVariable());
        }
        return value == null || value.isBlank() ? null : value.trim();
    }

    // ------------------------------------------------------------------------------------------------ search

    /** Where a search looked and the existing files it found, in order. */
    public record Search(List<Path> found, List<String> looked) {
    }

    /**
     * Lists the existing candidate files for {@code spec}: {@code explicitPath} alone when it is not null, else each
     * directory of {@code directories} in order. Pure file-system work, no dlopen: tests pass their own directories.
     */
    public static Search search(LibrarySpec spec, String explicitPath, List<Path> directories) {
        List<Path> found = new ArrayList<>();
        List<String> looked = new ArrayList<>();
        if (explicitPath != null) {
            Path p = Path.of(explicitPath);
            boolean exists = Files.isRegularFile(p);
            looked.add(explicitSource(spec) + " = " + explicitPath + (exists ? "" : " (no such file)"));
            if (exists) {
                found.add(p);
            }
            return new Search(found, looked);
        }
        looked.add("-D" + spec.propertyName() + " / " + spec.environmentVariable() + ": not set");
        for (Path dir : directories) {
            if (!Files.isDirectory(dir)) {
                looked.add(dir + " (no such directory)");
                continue;
            }
            List<Path> here = filesIn(spec, dir);
            looked.add(dir + (here.isEmpty() ? " (none of " + describeNames(spec) + ")" : " -> " + here));
            found.addAll(here);
        }
        return new Search(found, looked);
    }

    /** The first candidate file of {@link #search}, or a {@link NativeLibraryException} listing every place looked at. */
    public static Path locate(LibrarySpec spec, String explicitPath, List<Path> directories) {
        Search search = search(spec, explicitPath, directories);
        if (search.found().isEmpty()) {
            throw failure(spec, search.looked(), null);
        }
        return search.found().getFirst();
    }

    /** The matching files of one directory, in preference order. */
    static List<Path> filesIn(LibrarySpec spec, Path dir) {
        LinkedHashSet<Path> out = new LinkedHashSet<>();
        for (String fileName : spec.fileNames()) {
            Path p = dir.resolve(fileName);
            if (Files.isRegularFile(p)) { // follows symlinks
                out.add(p);
            }
        }
        if (spec.globPrefix() != null) {
            List<Path> versioned = new ArrayList<>();
            try (DirectoryStream<Path> stream = Files.newDirectoryStream(dir, glob(spec.globPrefix()) + "*")) {
                for (Path p : stream) {
                    String suffix = p.getFileName().toString().substring(spec.globPrefix().length());
                    if (VERSION.matcher(suffix).matches() && Files.isRegularFile(p)) {
                        versioned.add(p);
                    }
                }
            } catch (IOException | RuntimeException ignored) {
                // unreadable directory: nothing here
            }
            versioned.sort(Comparator.comparing((Path p) -> versionOf(p, spec.globPrefix()), NativeLibraries::compareVersions).reversed());
            out.addAll(versioned);
        }
        return new ArrayList<>(out);
    }

    private static final Pattern VERSION = Pattern.compile("\\d+(\\.\\d+)*");

    private static String glob(String literal) {
        return literal.replaceAll("([\\\\*?\\[\\]{}])", "\\\\$1");
    }

    private static int[] versionOf(Path p, String prefix) {
        String[] parts = p.getFileName().toString().substring(prefix.length()).split("\\.");
        int[] v = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                v[i] = Integer.parseInt(parts[i]);
            } catch (NumberFormatException e) {
                v[i] = 0;
            }
        }
        return v;
    }

    private static int compareVersions(int[] a, int[] b) {
        for (int i = 0; i < Math.max(a.length, b.length); i++) {
            int x = i < a.length ? a[i] : -1;
            int y = i < b.length ? b[i] : -1;
            if (x != y) {
                return Integer.compare(x, y);
            }
        }
        return 0;
    }

    private static String describeNames(LibrarySpec spec) {
        List<String> names = new ArrayList<>(spec.fileNames());
        if (spec.globPrefix() != null) {
            names.add(spec.globPrefix() + "*");
        }
        return String.join(", ", names);
    }

    private static String explicitSource(LibrarySpec spec) {
        String prop = System.getProperty(spec.propertyName());
        return prop != null && !prop.isBlank() ? "-D" + spec.propertyName() : "-D" + spec.propertyName() + " / " + spec.environmentVariable();
    }

    private static NativeLibraryException failure(LibrarySpec spec, List<String> looked, Throwable cause) {
        StringBuilder sb = new StringBuilder();
        sb.append("Native library '").append(spec.name()).append("' (").append(describeNames(spec))
                .append(") could not be opened. Looked at:");
        for (String place : looked) {
            sb.append("\n  - ").append(place);
        }
        sb.append("\nSet -D").append(spec.propertyName()).append("=/full/path/to/the/library or ")
                .append(spec.environmentVariable()).append(", or add its folder to LD_LIBRARY_PATH.");
        return new NativeLibraryException(spec.name(), sb.toString(), looked, cause);
    }

    // ------------------------------------------------------------------------------------------------ opening

    /**
     * Searches and opens {@code spec} (uncached): dependencies first, then the first candidate that dlopen accepts,
     * then (when {@code systemFallback}) the system loader by each file name.
     */
    public static Loaded open(LibrarySpec spec, String explicitPath, List<Path> directories, boolean systemFallback) {
        Search search = search(spec, explicitPath, directories);
        List<String> looked = new ArrayList<>(search.looked());
        Throwable lastError = null;
        for (Path candidate : search.found()) {
            try {
                openDependencies(spec, candidate.getParent());
                return new Loaded(spec.name(), candidate, openPath(spec, candidate));
            } catch (NativeLibraryException e) {
                looked.add(candidate + ": dependency failed: " + firstLine(e.getMessage()));
                lastError = e;
            } catch (RuntimeException e) {
                looked.add(candidate + ": could not be opened: " + e.getMessage());
                lastError = e;
            }
        }
        if (explicitPath == null && systemFallback) {
            for (String fileName : spec.fileNames()) {
                try {
                    SymbolLookup lookup = SymbolLookup.libraryLookup(fileName, Arena.global());
                    if (spec.global()) {
                        dlopenGlobal(fileName);
                    }
                    openDependencies(spec, null);
                    return new Loaded(spec.name(), Path.of(fileName), lookup);
                } catch (RuntimeException e) {
                    looked.add("system loader (ld.so.cache, RUNPATH): " + fileName + ": " + firstLine(e.getMessage()));
                    if (lastError == null) {
                        lastError = e;
                    }
                }
            }
        }
        throw failure(spec, looked, lastError);
    }

    private static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl) + " ...";
    }

    private static SymbolLookup openPath(LibrarySpec spec, Path path) {
        if (spec.global()) {
            dlopenGlobal(path.toString());
        }
        return SymbolLookup.libraryLookup(path, Arena.global());
    }

    private static void openDependencies(LibrarySpec spec, Path dir) {
        for (String dep : spec.dependencies()) {
            if (!openSibling(spec(dep), dir)) {
                loaded(dep); // full search; throws NativeLibraryException
            }
        }
        for (String dep : spec.optionalDependencies()) {
            try {
                openSibling(spec(dep), dir);
            } catch (RuntimeException ignored) {
                // optional
            }
        }
    }

    /** Opens the first copy of {@code dep} found in {@code dir}; false when there is none. */
    private static boolean openSibling(LibrarySpec dep, Path dir) {
        if (dir == null) {
            return false;
        }
        if (CACHE.get(dep.name()) instanceof Outcome o && o.loaded() != null && dir.equals(o.loaded().path().getParent())) {
            return true;
        }
        RuntimeException last = null;
        for (Path p : filesIn(dep, dir)) {
            try {
                SymbolLookup lookup = openPath(dep, p);
                CACHE.putIfAbsent(dep.name(), new Outcome(new Loaded(dep.name(), p, lookup), null));
                return true;
            } catch (RuntimeException e) {
                last = e;
            }
        }
        if (last != null) {
            throw last;
        }
        return false;
    }

    /** dlopen(path, RTLD_NOW | RTLD_GLOBAL) through libc; best effort (libraryLookup reports real errors). */
    private static void dlopenGlobal(String path) {
        try {
            Linker linker = Linker.nativeLinker();
            Optional<MemorySegment> addr = linker.defaultLookup().find("dlopen");
            if (addr.isEmpty()) {
                return;
            }
            MethodHandle dlopen = linker.downcallHandle(addr.get(),
                    FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment handle = (MemorySegment) dlopen.invokeExact(arena.allocateFrom(path), RTLD_NOW | RTLD_GLOBAL);
                // the handle is deliberately never closed: the library stays for the life of the process
                assert handle != null;
            }
        } catch (Throwable ignored) {
            // fall through to libraryLookup
        }
    }

    // ------------------------------------------------------------------------------------------------ directories

    private static volatile List<Path> pythonSitePackages;

    /** The directories searched for {@code spec}, in order (explicit path excluded). */
    public static List<Path> defaultSearchDirectories(LibrarySpec spec) {
        LinkedHashSet<Path> dirs = new LinkedHashSet<>();
        String ld = System.getenv("LD_LIBRARY_PATH");
        if (ld != null) {
            for (String entry : ld.split(":")) {
                if (!entry.isBlank()) {
                    dirs.add(Path.of(entry.trim()));
                }
            }
        }
        String arch = System.getProperty("os.arch", "amd64");
        String triplet = arch.equals("aarch64") ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
        String target = arch.equals("aarch64") ? "sbsa-linux" : "x86_64-linux";
        for (String env : List.of("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")) {
            String home = System.getenv(env);
            if (home != null && !home.isBlank()) {
                dirs.add(Path.of(home, "lib64"));
                dirs.add(Path.of(home, "lib"));
                dirs.add(Path.of(home, "targets", target, "lib"));
            }
        }
        dirs.add(Path.of("/usr/local/cuda/lib64"));
        dirs.add(Path.of("/usr/local/cuda/targets", target, "lib"));
        for (Path versioned : expand(Path.of("/usr/local"), "cuda-*")) {
            dirs.add(versioned.resolve("lib64"));
            dirs.add(versioned.resolve("targets").resolve(target).resolve("lib"));
        }
        dirs.add(Path.of("/opt/cuda/lib64"));
        dirs.add(Path.of("/opt/cuda/lib"));
        dirs.add(Path.of("/usr/local/nvidia/lib64"));
        dirs.add(Path.of("/usr/local/nvidia/lib"));
        dirs.add(Path.of("/usr/lib", triplet));
        dirs.add(Path.of("/lib", triplet));
        dirs.add(Path.of("/usr/lib64"));
        dirs.add(Path.of("/usr/lib"));
        dirs.add(Path.of("/usr/lib/wsl/lib"));
        for (String extra : spec.extraDirectories()) {
            dirs.add(Path.of(extra));
        }
        // NVIDIA's pip wheels
        String conda = System.getenv("CONDA_PREFIX");
        if (conda != null && !conda.isBlank()) {
            dirs.add(Path.of(conda, "lib"));
        }
        for (Path site : sitePackages()) {
            Path nvidia = site.resolve("nvidia");
            if (!Files.isDirectory(nvidia)) {
                continue;
            }
            for (String pkg : spec.pipPackages()) {
                dirs.add(nvidia.resolve(pkg).resolve("lib"));
            }
            for (Path pkg : expand(nvidia, "*")) {
                if (Files.isDirectory(pkg.resolve("lib"))) {
                    dirs.add(pkg.resolve("lib"));
                }
            }
        }
        // keep only existing directories among the pip/python ones? No: list all, search() marks missing ones.
        return new ArrayList<>(dirs);
    }

    /** Every site-packages / dist-packages directory of the Python installs that can be seen. */
    public static List<Path> sitePackages() {
        List<Path> cached = pythonSitePackages;
        if (cached != null) {
            return cached;
        }
        LinkedHashSet<Path> roots = new LinkedHashSet<>();
        String venv = System.getenv("VIRTUAL_ENV");
        if (venv != null && !venv.isBlank()) {
            addPythonLibs(roots, Path.of(venv, "lib"), "site-packages");
        }
        String conda = System.getenv("CONDA_PREFIX");
        if (conda != null && !conda.isBlank()) {
            addPythonLibs(roots, Path.of(conda, "lib"), "site-packages");
        }
        roots.addAll(pythonReportedSitePackages());
        addPythonLibs(roots, Path.of("/usr/local/lib"), "site-packages", "dist-packages");
        addPythonLibs(roots, Path.of("/usr/lib"), "site-packages", "dist-packages");
        addPythonLibs(roots, Path.of("/usr/lib64"), "site-packages");
        String home = System.getProperty("user.home");
        if (home != null) {
            addPythonLibs(roots, Path.of(home, ".local", "lib"), "site-packages");
        }
        addPythonLibs(roots, Path.of("/opt/conda/lib"), "site-packages");
        List<Path> result = roots.stream().filter(Files::isDirectory).toList();
        pythonSitePackages = result;
        return result;
    }

    private static void addPythonLibs(LinkedHashSet<Path> roots, Path lib, String... kinds) {
        for (Path py : expand(lib, "python3*")) {
            for (String kind : kinds) {
                roots.add(py.resolve(kind));
            }
        }
    }

    private static List<Path> pythonReportedSitePackages() {
        List<Path> out = new ArrayList<>();
        String python = findOnPath("python3");
        if (python == null) {
            return out;
        }
        try {
            Process p = new ProcessBuilder(python, "-c",
                    "import site\nfor p in site.getsitepackages() + [site.getusersitepackages()]: print(p)")
                    .redirectErrorStream(false).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            p.getOutputStream().close();
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                if (!p.waitFor(5, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    return out;
                }
                String line;
                while ((line = r.readLine()) != null) {
                    if (!line.isBlank()) {
                        out.add(Path.of(line.trim()));
                    }
                }
            }
        } catch (IOException | RuntimeException e) {
            // no usable python
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return out;
    }

    private static String findOnPath(String exe) {
        String path = System.getenv("PATH");
        if (path == null) {
            return null;
        }
        for (String dir : path.split(":")) {
            if (dir.isBlank()) {
                continue;
            }
            Path p = Path.of(dir, exe);
            if (Files.isExecutable(p)) {
                return p.toString();
            }
        }
        return null;
    }

    /** Entries of {@code dir} matching {@code glob}, sorted by name descending (newest version first). */
    private static List<Path> expand(Path dir, String glob) {
        List<Path> out = new ArrayList<>();
        if (!Files.isDirectory(dir)) {
            return out;
        }
        try (DirectoryStream<Path> stream = Files.newDirectoryStream(dir, glob)) {
            stream.forEach(out::add);
        } catch (IOException | RuntimeException ignored) {
            // unreadable
        }
        out.sort(Comparator.comparing((Path p) -> p.getFileName().toString().toLowerCase(Locale.ROOT)).reversed());
        return out;
    }

    /** Forgets cached results (tests). */
    public static void clearCache() {
        CACHE.clear();
        pythonSitePackages = null;
    }
}
