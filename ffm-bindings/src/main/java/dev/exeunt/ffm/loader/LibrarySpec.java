package dev.exeunt.ffm.loader;

import java.util.List;

/**
 * How to find one shared library.
 *
 * @param name                 base name, e.g. {@code "cublas"}; also names the override property
 *                             {@code -Dexeunt.<name>.path} and the environment variable {@code EXEUNT_<NAME>_PATH}
 * @param fileNames            file names tried in each directory, in order (sonames first, e.g. {@code libcublas.so.13})
 * @param globPrefix           when not null, any file named {@code <globPrefix><version>} (e.g. {@code libnvrtc-builtins.so.12.4})
 *                             is also accepted, highest version first, after {@link #fileNames}
 * @param pipPackages          folders of NVIDIA's pip wheels looked at first under {@code site-packages/nvidia/} (e.g.
 *                             {@code cublas} for {@code nvidia/cublas/lib}); every other {@code nvidia/*}{@code /lib} follows
 * @param extraDirectories     directories specific to this library (e.g. Open MPI's prefixes), looked at after the CUDA ones
 * @param dependencies         libraries that must be opened first (from the same directory when they are there)
 * @param optionalDependencies libraries opened first when they sit in the same directory; ignored when absent
 * @param global               open with {@code RTLD_GLOBAL} (needed by libraries that dlopen plug-ins, like Open MPI)
 */
public record LibrarySpec(String name, List<String> fileNames, String globPrefix, List<String> pipPackages,
                          List<String> extraDirectories, List<String> dependencies, List<String> optionalDependencies,
                          boolean global) {

    public LibrarySpec {
        fileNames = List.copyOf(fileNames);
        pipPackages = List.copyOf(pipPackages);
        extraDirectories = List.copyOf(extraDirectories);
        dependencies = List.copyOf(dependencies);
        optionalDependencies = List.copyOf(optionalDependencies);
    }

    /** A library tried under the given file names, then {@code lib<name>.so.*}, then {@code lib<name>.so}. */
    public static LibrarySpec of(String name, String... fileNames) {
        return new LibrarySpec(name, List.of(fileNames), "lib" + name + ".so.", List.of(), List.of(), List.of(), List.of(), false);
    }

    public LibrarySpec withGlobPrefix(String prefix) {
        return new LibrarySpec(name, fileNames, prefix, pipPackages, extraDirectories, dependencies, optionalDependencies, global);
    }

    public LibrarySpec withPipPackages(String... packages) {
        return new LibrarySpec(name, fileNames, globPrefix, List.of(packages), extraDirectories, dependencies, optionalDependencies, global);
    }

    public LibrarySpec withExtraDirectories(String... dirs) {
        return new LibrarySpec(name, fileNames, globPrefix, pipPackages, List.of(dirs), dependencies, optionalDependencies, global);
    }

    public LibrarySpec withDependencies(String... deps) {
        return new LibrarySpec(name, fileNames, globPrefix, pipPackages, extraDirectories, List.of(deps), optionalDependencies, global);
    }

    public LibrarySpec withOptionalDependencies(String... deps) {
        return new LibrarySpec(name, fileNames, globPrefix, pipPackages, extraDirectories, dependencies, List.of(deps), global);
    }

    public LibrarySpec withGlobal(boolean value) {
        return new LibrarySpec(name, fileNames, globPrefix, pipPackages, extraDirectories, dependencies, optionalDependencies, value);
    }

    /** The system property that names an explicit path: {@code exeunt.<name>.path}. */
    public String propertyName() {
        return "exeunt." + name + ".path";
    }

    /** The environment variable that names an explicit path: {@code EXEUNT_<NAME>_PATH} (non-alphanumerics become '_'). */
    public String environmentVariable() {
        return "EXEUNT_" + name.toUpperCase(java.util.Locale.ROOT).replaceAll("[^A-Z0-9]", "_") + "_PATH";
    }
}
