// The real-program harness's C++ program: prints what its globals, virtual
// calls, templates, standard containers and a cross-file exception do, and
// exits with status 0 after the destructors print.
#include <iostream>

#include "shapes.hpp"

static Tracer main_tracer("main.cpp global");

static const std::string &greeting()
{
    static const std::string text = [] {
        std::printf("function-local static initialised\n");
        return std::string("hello from ") + "modload";
    }();
    return text;
}

int main()
{
    std::cout << greeting() << '\n' << greeting().size() << " chars" << std::endl;

    auto shapes = make_shapes(9);
    for (const auto &shape : shapes)
        std::cout << shape->describe() << '\n';

    Tally<std::string, int> by_name;
    register_shapes(shapes, by_name);
    Tally<std::string, int>::instances++;
    std::cout << "squares " << by_name.get("square") << ", triangles " << by_name.get("triangle")
              << ", tally instances " << Tally<std::string, int>::instances << '\n';

    std::vector<double> areas;
    int caught = 0;
    for (const auto &shape : shapes) {
        try {
            areas.push_back(checked_area(*shape, 20.0));
        } catch (const RegistryError &error) {
            caught++;
            std::cout << "caught RegistryError(" << error.code() << "): " << error.what() << '\n';
        }
    }
    try {
        std::vector<int> empty;
        std::cout << empty.at(3);
    } catch (const std::out_of_range &) {
        caught++;
        std::cout << "caught std::out_of_range from the library\n";
    }
    std::printf("%zu areas under the limit, total %.4f, %d exceptions, %d registry calls\n",
                areas.size(), total(areas), caught, registry_calls());

    std::map<int, std::string> ordered{{3, "three"}, {1, "one"}, {2, "two"}};
    for (const auto &[number, word] : ordered)
        std::cout << number << ':' << word << ' ';
    std::cout << std::endl;
    return 0;
}
