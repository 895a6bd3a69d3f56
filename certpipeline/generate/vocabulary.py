"""Words the generator draws from: names, places, organisation, topics, questions.

Names and places are deliberately international (accents, apostrophes, non-Latin
scripts' transliterations) so that reports and CSV files meet real-world text.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

FIRST_NAMES = (
    "Emma Liam Olivia Noah Ava Lucas Sophia Mateo Mia Elijah Amelia Hugo Chloé Léa Jules Zoë "
    "José Ana João Søren Ingrid Björn Aisha Omar Fatima Yusuf Priya Arjun Mei Wei Hiroshi Yuki "
    "Sakura Min-jun Ji-woo Olga Dmitri Chiara Marco Giulia Lukas Hannah Finn Maja Kofi Amara "
    "Chinedu Nia Santiago Valentina Camila Diego Isabella Ethan Grace Jack Chloe Leo Ruby Oscar"
).split()
LAST_NAMES = (
    "Smith|Johnson|Williams|Brown|Jones|García|Müller|Schmidt|Dubois|Martin|Bernard|Rossi|Russo|"
    "Fernández|López|Silva|Santos|Kowalski|Nowak|Novák|Jensen|Nielsen|Andersson|Johansson|O'Brien|"
    "O'Connor|McCarthy|Kim|Lee|Park|Wang|Li|Zhang|Chen|Tanaka|Suzuki|Sato|Patel|Sharma|Singh|Khan|"
    "Ahmed|Hassan|Okafor|Mensah|Adeyemi|Ivanov|Petrov|Kuznetsov|van der Berg|de Vries|Janssen|"
    "Peeters|Murphy|Walsh|Taylor|Anderson|Thomas|Moore|Clark"
).split("|")
EMAIL_DOMAINS = ("example.com", "example.com", "example.com", "corp.example.net", "example.org")
PARTNER_EMAIL_DOMAINS = ("contoso.example", "fabrikam.example", "globex.example")

# (value, relative weight)
COUNTRIES = (
    ("United States", 20), ("France", 12), ("Germany", 12), ("United Kingdom", 10), ("India", 10),
    ("Spain", 6), ("Brazil", 5), ("Canada", 5), ("Japan", 4), ("Netherlands", 4), ("Italy", 4),
    ("Poland", 3), ("Mexico", 3), ("Australia", 3), ("Sweden", 2), ("Singapore", 2),
    ("South Africa", 2), ("Côte d'Ivoire", 1), ("Türkiye", 1),
)
JOB_LEVELS = (  # in order of seniority: a promotion is the next one
    ("Individual Contributor", 40), ("Senior", 22), ("Lead", 12), ("Manager", 14),
    ("Senior Manager", 6), ("Director", 4), ("VP", 2),
)
EMPLOYMENT_TYPES = (("Full-time", 80), ("Part-time", 8), ("Contractor", 12))

DIVISIONS = (
    "Sales", "Engineering", "Operations", "Finance", "Human Resources", "Marketing",
    "Customer Support", "Legal", "Manufacturing", "Research & Development",
)
REGIONS = (
    "EMEA", "North America", "APAC", "LATAM", "DACH", "Nordics", "UK & Ireland", "France",
    "Iberia", "India", "Japan", "ANZ",
)
TEAM_NAMES = (
    "Alpha Bravo Delta Echo Falcon Harbor Horizon Kestrel Lynx Meridian Nova Orion Phoenix "
    "Quartz Summit Tango Vega Zenith Atlas Borealis Cedar Comet Ember Granite"
).split()
PARTNERS = ("Contoso Consulting", "Fabrikam Services", "Globex Logistics")
PARTNER_TEAM_NAMES = ("Delivery", "Field Team")

TOPICS = (
    "Data Privacy", "Information Security", "Cloud Computing", "Project Management",
    "Agile Delivery", "Leadership", "Negotiation", "Public Speaking", "Excel", "SQL",
    "Python Programming", "Machine Learning", "Customer Service", "Sales Fundamentals",
    "Workplace Safety", "Anti-Bribery Compliance", "GDPR", "Diversity & Inclusion",
    "Financial Reporting", "Supply Chain", "Lean Six Sigma", "Time Management",
    "Conflict Resolution", "Coaching Skills", "Product Management", "UX Design",
    "Digital Marketing", "Business Writing", "Risk Management", "First Aid", "Kubernetes",
    "Network Fundamentals", "Quality Assurance", "Change Management", "Accounting Basics",
    "Cybersecurity Awareness", "Code of Conduct", "Presentation Skills", "Data Visualization",
    "Forklift Operation",
)
COURSE_TITLES = (
    "{t} Essentials", "Introduction to {t}", "Advanced {t}", "{t} for Managers",
    "{t}: Best Practices", "Foundations of {t}", "{t} Masterclass", "Practical {t}",
)
PATH_TITLES = ("{t} Certification Path", "{t} Professional Track", "Certified {t} Program", "{t} Learning Path")
QUESTIONS = (
    "Which of the following best describes {t}?",
    "What is the main goal of {t}?",
    "Select the correct statement about {t}.",
    "True or false: {t} applies to every team.",
    "Which tool is most useful for {t}?",
    "In {t}, what should you do first?",
    "Describe one risk related to {t}.",
    "Which role is accountable for \"{t}\" in your team?",
)
FREE_TEXT_QUESTION_PREFIX = "Describe"  # the questions answered in free text
CHOICES = "ABCD"  # the answers of the multiple-choice questions
FREE_TEXT_ANSWERS = (
    "Escalate to my manager and document the issue.",
    "Check the policy, then ask the owner.",
    "Loss of customer data & trust",
    "Not sure — I would look it up",
    "Review the checklist before starting",
)
# Session names carry their start month; spelled out here so that the bytes do not
# depend on the machine's locale (strftime's %b does).
MONTH_ABBREVIATIONS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# What malformed lines put where the contract expects something else.
UNKNOWN_EVENT_TYPES = ("badge.awarded", "course.published", "enrollment.paused", "user.login", "session.moved")
VALUES_OUTSIDE_ANY_SET = ("done", "finished", "member", "superuser", "closed", "pending")


@lru_cache(maxsize=None)
def email_part(text: str) -> str:
    """'Søren' -> 'soren', "O'Brien" -> 'obrien': accents dropped, lower case, letters,
    digits and hyphens only."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in text.lower() if ch.isalnum() or ch == "-")


def numbered(names: tuple[str, ...], index: int) -> str:
    """names[index], with a number once the names run out: 'Alpha', ..., 'Alpha 2', ..."""
    name = names[index % len(names)]
    return f"{name} {index // len(names) + 1}" if index >= len(names) else name
