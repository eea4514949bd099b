/*
 * The memory floor of scripts/bench-sqlite.sh: what any loader that copies
 * an object's sections into fresh memory pays before it parses, resolves
 * or relocates anything. It maps the object as `modload run` does
 * (MAP_POPULATE), takes as many fresh pages as the object's SHF_ALLOC
 * sections fill (MADV_POPULATE_WRITE, as `modload run` does), copies the
 * sections there, and makes the code read-execute and the rest read-only.
 * Usage: memory-floor OBJECT. Exits 0, or 1 if the object cannot be read.
 */
#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096UL

static size_t pages(size_t bytes)
{
    return (bytes + PAGE - 1) / PAGE * PAGE;
}

int main(int argc, char **argv)
{
    struct stat st;
    int fd = argc == 2 ? open(argv[1], O_RDONLY) : -1;
    if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(Elf64_Ehdr))
        return 1;
    const unsigned char *object =
        mmap(0, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (object == MAP_FAILED)
        return 1;
    const Elf64_Ehdr *header = (const void *)object;
    if (header->e_shoff + (size_t)header->e_shnum * sizeof(Elf64_Shdr) > (size_t)st.st_size)
        return 1;
    const Elf64_Shdr *sections = (const void *)(object + header->e_shoff);

    /* Code first, then everything else, each part on its own pages. */
    size_t code = 0, rest = 0;
    for (int i = 0; i < header->e_shnum; i++) {
        if (!(sections[i].sh_flags & SHF_ALLOC))
            continue;
        if (sections[i].sh_flags & SHF_EXECINSTR)
            code += sections[i].sh_size;
        else
            rest += sections[i].sh_size;
    }
    size_t code_pages = pages(code), total = code_pages + pages(rest);
    unsigned char *region = mmap(0, 64UL << 20, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED)
        return 1;
    madvise(region, total, MADV_POPULATE_WRITE);
    size_t code_at = 0, rest_at = code_pages;
    for (int i = 0; i < header->e_shnum; i++) {
        const Elf64_Shdr *section = &sections[i];
        if (!(section->sh_flags & SHF_ALLOC) || section->sh_type == SHT_NOBITS)
            continue;
        if (section->sh_offset + section->sh_size > (size_t)st.st_size)
            return 1;
        size_t *at = section->sh_flags & SHF_EXECINSTR ? &code_at : &rest_at;
        memcpy(region + *at, object + section->sh_offset, section->sh_size);
        *at += section->sh_size;
    }
    mprotect(region, code_pages, PROT_READ | PROT_EXEC);
    mprotect(region + code_pages, total - code_pages, PROT_READ);
    return 0;
}
