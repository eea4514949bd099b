// Registers shapes by name and throws RegistryError, caught in main.cpp.
#include "shapes.hpp"

static Tracer registry_tracer("registry.cpp global");
static int calls;

void register_shapes(const std::vector<std::unique_ptr<Shape>> &shapes,
                     Tally<std::string, int> &by_name)
{
    Tally<std::string, int>::instances++;
    std::vector<int> lengths;
    for (const auto &shape : shapes) {
        by_name.add(shape->name(), 1);
        lengths.push_back(static_cast<int>(shape->name().size()));
        calls++;
    }
    std::printf("registered: %s(name lengths total %d)\n", by_name.summary().c_str(),
                total(lengths));
}

double checked_area(const Shape &shape, double limit)
{
    calls++;
    double area = shape.area();
    if (area > limit)
        throw RegistryError(shape.name() + " area " + std::to_string(static_cast<int>(area)) +
                                " exceeds " + std::to_string(static_cast<int>(limit)),
                            static_cast<int>(area));
    return area;
}

int registry_calls() { return calls; }
