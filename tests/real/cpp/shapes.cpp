// Shape's hierarchy: its vtables and typeinfo are emitted here only.
#include "shapes.hpp"

static Tracer shapes_tracer("shapes.cpp global");

Shape::~Shape() = default;

std::string Shape::describe() const
{
    char area_text[32];
    std::snprintf(area_text, sizeof area_text, "%.3f", area());
    return name() + " with area " + area_text;
}

namespace {

class Circle final : public Shape {
public:
    explicit Circle(double radius) : radius_(radius) {}
    double area() const override { return 3.14159265358979 * radius_ * radius_; }
    std::string name() const override { return "circle"; }

private:
    double radius_;
};

class Rectangle : public Shape {
public:
    Rectangle(double width, double height) : width_(width), height_(height) {}
    double area() const override { return width_ * height_; }
    std::string name() const override { return "rectangle"; }

protected:
    double width_, height_;
};

class Square final : public Rectangle {
public:
    explicit Square(double side) : Rectangle(side, side) {}
    std::string name() const override { return "square"; }
};

} // namespace

std::vector<std::unique_ptr<Shape>> make_shapes(int count)
{
    std::vector<std::unique_ptr<Shape>> shapes;
    std::vector<double> sizes;
    for (int i = 1; i <= count; i++) {
        double size = 0.5 * i;
        sizes.push_back(size);
        switch (i % 3) {
        case 0: shapes.push_back(std::make_unique<Circle>(size)); break;
        case 1: shapes.push_back(std::make_unique<Rectangle>(size, size + 1)); break;
        default: shapes.push_back(std::make_unique<Square>(size)); break;
        }
    }
    std::printf("made %zu shapes, sizes total %.2f\n", shapes.size(), total(sizes));
    return shapes;
}
